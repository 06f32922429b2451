"""Gradient-leakage attacks, registered by name. Importing this package registers all of them."""

from fedleak.attacks.base import ATTACKS, THREAT, Attack, check_params, get_attack, list_attacks, register_attack

__all__ = ["ATTACKS", "THREAT", "Attack", "check_params", "get_attack", "list_attacks", "register_attack"]

# Each import registers one attack (the gradient-matching family, then the analytic family).
# from fedleak.attacks import dlg, idlg, inverting_gradients, linear  # noqa: E402,F401
# from fedleak.attacks import hybrid, rconv, rgap  # noqa: E402,F401
