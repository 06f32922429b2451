"""Flower ServerApp of the testbed: an honest-but-curious server.

Installed as ``fedleak.server``. ``fedsgd`` is the FedSGD strategy, ``interceptor`` the strategy wrapper that copies
every reply to a tap before aggregation, ``leakage`` the tap that attacks and scores, ``app`` the ServerApp.
"""
