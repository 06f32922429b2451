"""The executor interface: ``submit(observation, attack, context)`` now, outcomes later, ``drain()`` at the end.

The ``context`` is the server's own bookkeeping for the scorer (a :class:`~fedleak.types.ScoringContext` in a run:
round, client, the batch's audit indices); executors are generic over its type and hand it back untouched. It stays
in the server process: executors pass attacks the Observation and the attack's settings, nothing else.
An attack that raises, diverges or runs past ``timeout_s`` yields a ``failed`` Reconstruction; it never ends the run.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from fedleak.attacks import get_attack
from fedleak.config.schema import AttackConfig
from fedleak.types import Observation, Reconstruction

#: The caller's context type, carried through an executor untouched.
C = TypeVar("C")


@dataclass
class AttackOutcome(Generic[C]):
    """A finished attack: the server's context (handed back untouched), the attack's name and its result."""

    context: C
    attack: str
    reconstruction: Reconstruction


@dataclass
class AttackFuture(Generic[C]):
    """A handle on one submitted attack; ``outcome`` is set once it finished (collected by the executor)."""

    attack: str
    context: C
    outcome: AttackOutcome[C] | None = field(default=None, repr=False)

    def done(self) -> bool:
        return self.outcome is not None

    def result(self) -> AttackOutcome[C]:
        if self.outcome is None:
            raise RuntimeError(f"attack {self.attack!r} has not finished; call the executor's drain() first")
        return self.outcome


class AttackExecutor(ABC, Generic[C]):
    """Runs attacks on observations; results come back through :meth:`completed` and :meth:`drain`.

    Args:
        device: ``cpu``, ``cuda`` or ``auto`` (a GPU when one exists).
        seed: the scenario's seed; each job's attack seed derives from it, the round and the client.
        timeout_s: an attack running longer is recorded as failed with reason ``timeout``.
        max_in_flight: :meth:`submit` blocks while this many attacks are unfinished.
    """

    def __init__(self, device: str = "auto", seed: int = 0, timeout_s: float = 600.0, max_in_flight: int = 8):
        self.device = device
        self.seed = seed
        self.timeout_s = timeout_s
        self.max_in_flight = max_in_flight
        self._finished: list[AttackOutcome[C]] = []

    @abstractmethod
    def submit(self, observation: Observation, attack: AttackConfig, context: C) -> AttackFuture[C]:
        """Start ``attack`` on ``observation``; ``context`` comes back with the outcome and is never sent along."""

    @property
    @abstractmethod
    def pending(self) -> int:
        """Attacks submitted and not yet collected."""

    @abstractmethod
    def _collect(self, block: bool) -> None:
        """Move finished jobs into ``self._finished``; with ``block``, wait until nothing is pending."""

    def completed(self) -> list[AttackOutcome[C]]:
        """Outcomes finished since the last call (never blocks)."""
        self._collect(block=False)
        done, self._finished = self._finished, []
        return done

    def drain(self) -> list[AttackOutcome[C]]:
        """Wait for every submitted attack; return the outcomes not yet handed out."""
        self._collect(block=True)
        done, self._finished = self._finished, []
        return done

    def close(self) -> None:
        """Release workers. Pending attacks are abandoned: call :meth:`drain` first to keep them."""
        return None

    def __enter__(self) -> AttackExecutor[C]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _finish(self, future: AttackFuture[C], reconstruction: Reconstruction) -> None:
        future.outcome = AttackOutcome(future.context, future.attack, reconstruction)
        self._finished.append(future.outcome)


def job_seed(base_seed: int, attack: str, observation: Observation) -> int:
    """A stable seed per (scenario seed, attack, round, client): reruns give the same reconstructions."""
    meta = observation.metadata
    key = f"{base_seed}/{attack}/{meta.round}/{meta.client}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "little")


def run_one(observation: Observation, attack: AttackConfig, device: str, seed: int) -> Reconstruction:
    """Build the attack from its scenario entry and call it (``Attack.__call__`` times it and records crashes); a
    setup error (bad parameters) becomes a failed Reconstruction too."""
    try:
        instance = get_attack(attack.name, device=device, seed=seed, **attack.params)
    except Exception as exc:  # noqa: BLE001 — a bad attack setup is recorded, the run goes on
        return Reconstruction.failed(f"setup: {type(exc).__name__}: {exc}")
    return instance(observation)
