"""The one-run DP audit inside a run (Steinke, Nasr & Jagielski, "Privacy Auditing with One (1) Training Run",
NeurIPS 2023, arXiv 2305.08846).

The audited clients' shards hold their canaries with probability ½ each (fedleak/federated_data.py,
fedleak/canaries.py). In the audit's round the server scores every canary of each audited client on that client's
update — the informed least-squares score of fedleak/canary_scores.py, which uses the global weights, the update and
the client's other records of that round (DP's guarantee holds against an adversary who knows every other record) —
guesses inclusion for the most confident canaries and turns the right guesses into an empirical lower bound on ε at
95 % (fedleak/privacy_audit.py). One round's update is a post-processing of the whole run's transcript, so its bound
is a lower bound on the ε the accountant claims for the whole run (``claimed_epsilon``: the client's spend after the
audited round, which is the end's when the audit is of the last round).

Which guarantee is audited (``guarantee`` column): one record added or removed. For DP-SGD that is the per-record ε
the accountant claims. For local DP on the update the claimed ε is per update; under the replace-one relation it
bounds every record too and the audit checks it; under the zero-update relation the per-record ε is the update's at
twice the sensitivity, which is what the bound is about (fedleak/privacy_audit.py says why).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from fedleak.canary_scores import audit_update
from fedleak.config.schema import Scenario
from fedleak.types import Observation, ScoringContext

PAPER = "Steinke, Nasr & Jagielski, NeurIPS 2023, arXiv 2305.08846"


def guarantee_of(defense: Any) -> str:
    """The guarantee one audited record tests, in words, for the client's defense."""
    kind = getattr(defense, "kind", "none")
    if kind == "dp_sgd":
        return "per record (DP-SGD's accounted ε)"
    if kind == "local_dp":
        relation = getattr(defense, "neighbours", "replace_one")
        if relation == "zero_update":
            return "per record: the update's ε at twice its sensitivity (local DP, zero-update relation)"
        return "per record, implied by the per-update ε (local DP, replace-one relation)"
    return "per record (no DP claimed)"


class CanaryAudit:
    """Audits each audited client's update in the audit's round and writes one audit.csv row per client.

    Args:
        scenario: the run's scenario (``audit`` set).
        data: the run's :class:`fedleak.federated_data.FederatedData` (its canaries and image lookup).
        writer: a :class:`fedleak.report.RunWriter`, or None to keep the rows in :attr:`rows` only.
    """

    def __init__(self, scenario: Scenario, data: Any, writer: Any = None):
        if scenario.audit is None:
            raise ValueError("the scenario has no audit section")
        self.config = scenario.audit
        self.scenario = scenario
        self.data = data
        self.writer = writer
        self.round = self.config.round or scenario.training.rounds
        self.rows: list[dict[str, Any]] = []

    def submit(self, observation: Observation, context: ScoringContext) -> bool:
        """Audit this update if it is an audited client's in the audit's round; True when audited."""
        if context.round != self.round or context.client not in self.data.canaries:
            return False
        row = self.run(observation, context)
        self.rows.append(row)
        if self.writer is not None:
            self.writer.append_audit(row)
        return True

    def run(self, observation: Observation, context: ScoringContext) -> dict[str, Any]:
        """Score the client's canaries on its update, guess, bound ε (a crash is a ``failed`` row)."""
        canaries = self.data.canaries[context.client]
        defense = self.scenario.client_defense(context.client)
        delta = context.dp_delta or 0.0
        guesses = self.config.guesses or self.config.canaries
        start = time.perf_counter()
        row: dict[str, Any] = {
            "round": context.round, "client": context.client, "status": "ok", "reason": "",
            "defense": context.defense, "kind": self.config.kind, "canaries": len(canaries.indices),
            "included": int(canaries.included.sum()), "guesses": guesses, "confidence": 0.95, "delta": delta,
            "claimed_epsilon": context.dp_epsilon, "dp_unit": context.dp_unit, "guarantee": guarantee_of(defense),
            "paper": PAPER,
        }
        trained = np.asarray(context.indices, dtype=np.int64)
        others = trained[~np.isin(trained, canaries.indices)]
        try:
            _, other_labels = self.data.get(others)
            result = audit_update(observation.build_model(), observation.update, observation.kind != "gradient",
                                  canaries, self.data.get, others, other_labels.numpy(),
                                  getattr(defense, "max_grad_norm", None), guesses, delta)
            row.update(correct=result.correct, epsilon_lower=result.epsilon_lower)
        except Exception as exc:  # noqa: BLE001 — a crashed audit is a failed row, the run goes on
            row.update(status="failed", reason=f"{type(exc).__name__}: {exc}")
        row["seconds"] = round(time.perf_counter() - start, 4)
        return row
