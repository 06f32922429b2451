"""Flower ClientApp of the testbed: each client trains on its shard and replies with its update.

Installed as ``fedleak.clients``. ``update`` holds the pure torch work (the one client update, shared with
``fedleak attack``), ``defenses``/``defense_mod``/``dp_sgd`` protect the update, ``app`` wires them into Flower's
ClientApp. The reply's wire format (``fedleak.protocol``) and the scenario's data (``fedleak.federated_data``) live
in the shared kernel, which the server reads too.
"""
