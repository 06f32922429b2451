"""Client-side defenses, one object each (settings + hooks, see :mod:`fedleak.defenses.base`), one file each.

Importing this package registers the built-in defenses; the scenario schema's ``defense:`` field accepts every
registered one. The Flower mod that applies a defense to a ClientApp's reply is ``fedleak.clients.defense_mod``.
"""

from fedleak.defenses.base import (
    DEFENSES,
    AnyDefense,
    Defense,
    NoDefense,
    apply_defense,
    defense_label,
    defense_modules,
    import_defense_modules,
    noise_generator,
    register_defense,
)
from fedleak.defenses.dp_sgd import DpSgdDefense
from fedleak.defenses.local_dp import LocalDpDefense, local_dp_std
from fedleak.defenses.prune import PruneDefense
from fedleak.defenses.quantize import QuantizeDefense

__all__ = [
    "DEFENSES", "AnyDefense", "Defense", "DpSgdDefense", "LocalDpDefense", "NoDefense", "PruneDefense",
    "QuantizeDefense", "apply_defense", "defense_label", "defense_modules", "import_defense_modules",
    "local_dp_std", "noise_generator", "register_defense",
]
