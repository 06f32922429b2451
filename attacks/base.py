"""The attack contract: an attack is built from a config dataclass and maps an Observation to a Reconstruction.

Attacks import torch (and numpy/scipy) only — never Flower, never Ray, never fedleak.data — and see nothing but
the :class:`~fedleak.types.Observation`. Ground truth is joined later by the scorer.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from fedleak.attacks.update_check import update_problem
from fedleak.errors import UserError
from fedleak.registry import Registry
from fedleak.types import Observation, Reconstruction


class Attack:
    """Base class. Subclasses set ``Config`` (a dataclass) and implement :meth:`reconstruct`."""

    name: ClassVar[str] = ""

    @dataclasses.dataclass
    class Config:
        pass

    def __init__(self, config: Any | None = None, device: str | torch.device = "cpu", seed: int = 0):
        self.config = config if config is not None else self.Config()
        self.device = torch.device(device)
        self.seed = seed

    def reconstruct(self, observation: Observation) -> Reconstruction:
        raise NotImplementedError

    def __call__(self, observation: Observation) -> Reconstruction:
        """Run the attack, timed; a crash or non-finite output becomes a failed Reconstruction instead of a dead run,
        and an update with nothing to attack (zero or non-finite, ``update_check.py``) fails before the attack runs.
        The one way every caller (executors, ``fedleak attack``, benchmarks) runs an attack."""
        start = time.perf_counter()
        problem = update_problem(observation)
        if problem is not None:
            return Reconstruction.failed(problem, seconds=time.perf_counter() - start)
        try:
            result = self.reconstruct(observation)
        except Exception as exc:  # noqa: BLE001 — an attack crash is a result, not a dead run
            return Reconstruction.failed(f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - start)
        result.seconds = time.perf_counter() - start
        if observation.kind != "gradient":
            # Every row says how a multi-step update was attacked: an attack that does not simulate the client's
            # steps (it sets "simulate"/"simulate_epochs" itself) solved the pseudo-gradient (w_old - w_new)/(lr·steps).
            result.diagnostics.setdefault("update_mode", "pseudo_gradient")
        return _checked(result)


ATTACKS: Registry[type[Attack]] = Registry("attack")


def register_attack(name: str) -> Callable[[type[Attack]], type[Attack]]:
    def decorator(cls: type[Attack]) -> type[Attack]:
        cls.name = name
        ATTACKS.add(name, cls)
        return cls

    return decorator


def list_attacks() -> list[str]:
    return ATTACKS.names()


def check_params(name: str, params: dict[str, Any]) -> str | None:
    """None when ``params`` fit the attack's config, else a one-line description of the problem."""
    fields = {f.name: f for f in dataclasses.fields(ATTACKS.get(name).Config)}
    for key, value in params.items():
        if key not in fields:
            return f"unknown parameter {key!r} for attack {name!r}; allowed: {', '.join(fields) or 'none'}"
        problem = _type_problem(fields[key], value)
        if problem:
            return f"parameter {key!r} of attack {name!r}: {problem}"
    try:
        ATTACKS.get(name).Config(**params)
    except (TypeError, ValueError) as exc:
        return str(exc)
    return None


#: Integers past this are not settings but typos or attacks on the run (iterations: 10**30).
MAX_PARAM_INT = 10**9


def _type_problem(field: dataclasses.Field, value: Any) -> str | None:
    """What is wrong with ``value`` for a config field, judged by the kind of its default (an int setting takes an
    integer, a float setting a finite number, a flag true/false); None when it fits or the default says nothing."""
    default = field.default
    if value is None or default is dataclasses.MISSING or default is None:
        return None
    if isinstance(default, bool):
        return None if isinstance(value, bool) else f"expected true or false, got {value!r}"
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            return f"expected an integer, got {value!r}"
        return None if abs(value) <= MAX_PARAM_INT else f"{value} is beyond {MAX_PARAM_INT:,}"
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"expected a number, got {value!r}"
        return None if math.isfinite(value) else f"expected a finite number, got {value!r}"
    if isinstance(default, str) and not isinstance(value, str):
        return f"expected a string, got {value!r}"
    return None


def get_attack(name: str, device: str | torch.device = "cpu", seed: int = 0, **params: Any) -> Attack:
    cls = ATTACKS.get(name)
    problem = check_params(name, params)
    if problem:
        raise UserError(problem)
    return cls(cls.Config(**params), device=device, seed=seed)


def _checked(result: Reconstruction) -> Reconstruction:
    """Non-finite pixels fail the result; images are clamped to [0, 1] and moved to the CPU, labels too."""
    if result.status == "ok" and result.images is not None:
        if not torch.isfinite(result.images).all():
            result.status, result.reason = "failed", "diverged: non-finite pixels"
        else:
            result.images = result.images.detach().float().cpu().clamp(0, 1)
    if result.labels is not None:
        result.labels = result.labels.detach().cpu()
    return result
