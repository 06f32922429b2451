"""What happened in a run, for its own health check (Flower can exit 0 after failed rounds)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RunLedger:
    """What happened, for the run's own health check (Flower can exit 0 after failed rounds)."""

    clients_per_round: dict[int, set[int]] = field(default_factory=dict)
    reply_errors: list[str] = field(default_factory=list)
    rounds_logged: set[int] = field(default_factory=set)
    round_seconds: dict[int, float] = field(default_factory=dict)
    attacks_submitted: int = 0
    attacks_finished: int = 0
    attacks_failed: int = 0
    attacks_skipped: int = 0
    #: Time spent inside the tap (building observations, submitting, scoring): the interception's own cost.
    tap_seconds: float = 0.0
