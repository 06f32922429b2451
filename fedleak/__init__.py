"""fedleak: measure how much training data leaks from federated-learning updates."""

__version__ = "0.1.0"
