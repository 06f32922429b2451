"""Gradient-leakage attacks, registered by name. Every module of this package is imported here, so each
attack file registers itself (``@register_attack("dlg")``)."""

from fedleak.attacks.base import ATTACKS, Attack, check_params, get_attack, list_attacks, register_attack
from fedleak.autoload import import_submodules

import_submodules(__name__, __path__, skip={"base"})

__all__ = ["ATTACKS", "Attack", "check_params", "get_attack", "list_attacks", "register_attack"]
