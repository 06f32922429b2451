"""The curious server's membership inference: every scheduled update, whatever its size, gets a membership figure.

For each reply the tap hands over (the attacker's Observation and the scorer's context), this draws the update's
candidate set (``fedleak.data.candidates``), looks up the candidates' images and labels, lets each membership attack
score them blind — it receives the observation and the candidates in shuffled order, never ``is_member`` — and
judges the scores against the truth (``fedleak.metrics.membership``): one membership.csv row per attack.

The work runs on one background thread of the server process, so training goes on meanwhile (torch releases the
interpreter lock in its kernels); :meth:`MembershipWatch.drain` waits for it before the ServerApp returns. A crashed
attack is a ``failed`` row, never a dead run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from fedleak.attacks.membership import MEMBERSHIP_ATTACKS, score_candidates
from fedleak.config.schema import MembershipConfig, Scenario
from fedleak.data.candidates import CandidateSet, candidate_set
from fedleak.metrics.membership import score_membership
from fedleak.types import MembershipRecord, Observation, ScoringContext

#: Look up (images, labels) of the data source at the given indices.
Lookup = Callable[[np.ndarray], tuple[torch.Tensor, torch.Tensor]]


def membership_scheduled(membership: MembershipConfig, server_round: int, client: int) -> bool:
    """Whether the scenario asks for membership on this client's update in this round (the secure-aggregation
    aggregate, client −1, in every scheduled round)."""
    rounds_ok = membership.rounds == "all" or server_round in membership.rounds
    clients_ok = membership.clients == "all" or client in membership.clients or client < 0
    return rounds_ok and clients_ok


class MembershipWatch:
    """Runs the scenario's membership attacks on every scheduled update and writes the scored rows.

    Args:
        scenario: the run's scenario (its ``membership`` section must be set).
        lookup: images and labels at dataset indices (the candidates' records, which the threat model grants).
        held_out: the held-out split's dataset indices, where non-members come from.
        writer: a :class:`fedleak.report.RunWriter`, or None to keep the rows in :attr:`records` only.
        device: where the attacks compute.
    """

    def __init__(self, scenario: Scenario, lookup: Lookup, held_out: np.ndarray, writer=None, device: str = "cpu"):
        if scenario.membership is None:
            raise ValueError("the scenario has no membership section")
        self.config = scenario.membership
        self.scenario = scenario
        self.lookup = lookup
        self.held_out = np.asarray(held_out, dtype=np.int64)
        self.writer = writer
        self.device = device
        self.records: list[MembershipRecord] = []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="membership")
        self._futures: list[Future] = []

    def submit(self, observation: Observation, context: ScoringContext) -> bool:
        """Queue membership on one update if the scenario schedules it; True when queued."""
        if not membership_scheduled(self.config, context.round, context.client):
            return False
        self._futures.append(self._pool.submit(self.run, observation, context))
        return True

    def run(self, observation: Observation, context: ScoringContext) -> list[MembershipRecord]:
        """Draw the candidates, score them with every attack, judge and write the rows (on the calling thread)."""
        candidates = candidate_set(np.asarray(context.indices), self.held_out, self.scenario.seed, context.round,
                                   context.client, self.config.max_members)
        images, labels = self.lookup(candidates.indices)
        rows = [self._one(name, observation, context, candidates, images, labels) for name in self.config.attacks]
        for row in rows:
            self.records.append(row)
            if self.writer is not None:
                self.writer.append_membership(row)
        return rows

    def _one(self, attack: str, observation: Observation, context: ScoringContext, candidates: CandidateSet,
             images: torch.Tensor, labels: torch.Tensor) -> MembershipRecord:
        start = time.perf_counter()
        try:
            # The attack gets the observation and the candidates' records in shuffled order: nothing else.
            scores = score_candidates(observation, images, labels, attack=attack, device=self.device)
            judged = score_membership(scores, candidates.is_member)
        except Exception as exc:  # noqa: BLE001 — a crashed attack is a failed row, the run goes on
            return membership_record(attack, context, candidates, self.scenario, time.perf_counter() - start,
                                     status="failed", reason=f"{type(exc).__name__}: {exc}")
        return membership_record(attack, context, candidates, self.scenario, time.perf_counter() - start,
                                 judged=judged, paper=MEMBERSHIP_ATTACKS.get(attack).paper)

    def drain(self) -> None:
        """Wait for every queued update (a job's crash outside the attacks is raised here)."""
        futures, self._futures = self._futures, []
        for future in futures:
            future.result()

    def close(self) -> None:
        """Stop: queued jobs not yet started are dropped (after Ctrl-C)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def membership_record(attack: str, context: ScoringContext, candidates: CandidateSet, scenario: Scenario,
                      seconds: float, judged=None, status: str = "ok", reason: str = "",
                      paper: str = "") -> MembershipRecord:
    """One membership.csv row from the scorer's context, the candidate counts and the judged scores."""
    threat = scenario.threat_model
    numbers = {}
    if judged is not None:
        numbers = {"auc": judged.auc, "auc_low": judged.auc_low, "auc_high": judged.auc_high}
        for level, tag in ((0.01, "1pct"), (0.001, "0_1pct")):
            at = judged.tpr(level)
            numbers.update({f"tpr_at_{tag}_fpr": at.tpr, f"tpr_at_{tag}_fpr_low": at.low,
                            f"tpr_at_{tag}_fpr_high": at.high, f"true_positives_at_{tag}_fpr": at.true_positives,
                            f"false_positives_at_{tag}_fpr": at.false_positives})
    return MembershipRecord(
        round=context.round, client=context.client, attack=attack, status=status, reason=reason,
        update_kind=context.update_kind, batch_size=context.batch_size, local_epochs=context.local_epochs,
        defense=context.defense, trained=candidates.trained, pool=candidates.pool, members=candidates.members,
        non_members=candidates.non_members, seconds=round(seconds, 4), paper=paper,
        labels_known=threat.labels_known, local_hparams_known=threat.local_hparams_known,
        batch_size_known=threat.batch_size_known, dp_epsilon=context.dp_epsilon, dp_delta=context.dp_delta,
        dp_unit=context.dp_unit, **numbers,
    )
