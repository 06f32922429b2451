"""Flower ClientApp of the testbed: each client trains on one batch of its shard and replies with its update.

Installed as ``fedleak.clients``. ``protocol`` names the records of a reply, ``local_training`` holds the pure
torch work, ``shards`` turns a scenario into each client's data, ``app`` wires them into Flower's ClientApp.
"""
