"""fedleak: measure how much training data leaks from federated-learning updates.

The public Python API (:mod:`fedleak.drivers.api`)::

    import fedleak

    scenario = fedleak.load_scenario("scenarios/smoke.yaml", overrides=["training.rounds=1"])
    run = fedleak.simulate(scenario, out="runs/notebook")       # a Run: tables as pandas DataFrames
    run.images                                                  # one row per true image per attack
    result = fedleak.attack("idlg", my_module, images, labels)  # one update, a registry model or your nn.Module
    fedleak.open_run("runs/notebook").clients                   # a finished run, read back

``import fedleak`` stays cheap: the API (which loads torch and Flower) is imported on first use of a name below.
The package root is the façade over every layer, the drivers included, which is why it reaches them lazily by name.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["AttackResult", "Run", "Scenario", "__version__", "attack", "load_scenario", "open_run", "simulate"]

#: Public name → the module that defines it, imported when the name is first used.
_LAZY = {
    "AttackResult": "fedleak.drivers.api", "Run": "fedleak.drivers.api", "attack": "fedleak.drivers.api",
    "load_scenario": "fedleak.drivers.api", "open_run": "fedleak.drivers.api", "simulate": "fedleak.drivers.api",
    "Scenario": "fedleak.config.schema",
}

if TYPE_CHECKING:
    from fedleak.config.schema import Scenario
    from fedleak.drivers.api import AttackResult, Run, attack, load_scenario, open_run, simulate


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fedleak' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
