"""Flower ClientApp of the testbed: each client trains on its shard and replies with its update.

Installed as ``fedleak.clients``. ``protocol`` names the records of a reply, ``update`` holds the pure torch work
(the one client update, shared with ``fedleak attack``), ``shards`` turns a scenario into each client's data,
``defenses``/``defense_mod``/``dp_sgd`` protect the update, ``app`` wires them into Flower's ClientApp.
"""
