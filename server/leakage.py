"""The curious part of the server: copy each reply to the attacks the scenario schedules, score what comes back.

Each reply is split into the attacker's view and the scorer's context (``server/observations.py``); the schedule
(``server/schedule.py``) says which attacks run on it; the executor runs them; finished attacks are scored against
the true images and the whole dataset (mean-image baseline, re-identification) and written as they arrive: one
leakage.csv row and one diagnostics.jsonl line per attack. ``server/ledger.py`` keeps the counts for the run's
health check.
"""

from __future__ import annotations

import time

import numpy as np
from flwr.app import ArrayRecord, Message, MetricRecord

from fedleak import protocol
from fedleak.config.schema import Scenario
from fedleak.metrics.reference import ReferenceSet
from fedleak.report.privacy import spend_cells
from fedleak.runtime import AttackExecutor, AttackOutcome
from fedleak.scoring import score_reconstruction
from fedleak.server.interceptor import ReplyTap
from fedleak.server.ledger import RunLedger
from fedleak.server.observations import GroundTruth, aggregate_to_observation, public_of, reply_to_observation
from fedleak.server.progress import RunProgress
from fedleak.server.schedule import sampled_updates, scheduled
from fedleak.types import ModelSpec, Observation, Reconstruction, ScoringContext


class LeakageTap(ReplyTap):
    """Copies every train reply to the attacks the scenario schedules, scores results, writes rows.

    Args:
        scenario: the run's scenario (attacks, schedule, threat model, output settings).
        spec: the global model's architecture.
        ground_truth: data-source lookup by indices (scorer only).
        executor: where attacks run; ``None`` observes without attacking.
        writer: a :class:`fedleak.report.RunWriter`, or ``None`` to write nothing.
        progress: the progress display.
        dataset: every image of the run's data source (an ``ImageSet``), scorer only: the mean-image baseline and
            re-identification compare with it; ``None`` leaves both columns empty.
        membership: a :class:`fedleak.server.membership.MembershipWatch` that runs membership inference on every
            update it schedules, whatever the update's size; ``None``: no membership inference.
        audit: a :class:`fedleak.server.canary_audit.CanaryAudit` that audits the audited clients' updates in its
            round; ``None``: no audit.
    """

    def __init__(
        self, scenario: Scenario, spec: ModelSpec, ground_truth: GroundTruth,
        executor: AttackExecutor[ScoringContext] | None, writer=None, progress: RunProgress | None = None,
        dataset=None, membership=None, audit=None,
    ):
        self.reference = ReferenceSet.of(dataset)
        self.scenario = scenario
        self.spec = spec
        self.ground_truth = ground_truth
        self.executor = executor
        self.membership = membership
        self.audit = audit
        self.writer = writer
        self.progress = progress or RunProgress(scenario.training.rounds, scenario.clients.count, enabled=False)
        self.ledger = RunLedger()
        self._train_loss: dict[int, float] = {}
        #: round -> client -> the privacy its reply says it had spent after that round (attacked or not).
        self._spent: dict[int, dict[int, dict]] = {}
        self._round_started = time.perf_counter()

    # -- ReplyTap ------------------------------------------------------------------------------------------
    def on_train_replies(self, server_round: int, sent: ArrayRecord, replies: list[Message]) -> None:
        start = time.perf_counter()
        weights = sent.to_torch_state_dict()
        clients = self.ledger.clients_per_round.setdefault(server_round, set())
        answered = []
        for reply in replies:
            if reply.has_error():
                self.ledger.reply_errors.append(f"round {server_round}: {reply.error.reason}")
            else:
                answered.append(reply)
                public = public_of(reply)
                clients.add(public.client)
                self._spent.setdefault(server_round, {})[public.client] = public.dp_spend()
        if self.scenario.training.secure_aggregation and answered:
            args = (answered, weights, self.spec, self.scenario, self.ground_truth)
            observation, context = aggregate_to_observation(*args)
            self._submit(observation, context)
            self._membership(observation, context)
        else:
            clients_answered = sorted(public_of(r).client for r in answered)
            chosen = sampled_updates(self.scenario, server_round, clients_answered)
            for reply in answered:
                observation, context = reply_to_observation(reply, weights, self.spec, self.scenario,
                                                            self.ground_truth)
                self._submit(observation, context, chosen)
                self._membership(observation, context)
        self.progress.round_trained(server_round, len(clients))
        self.collect()
        self.ledger.tap_seconds += time.perf_counter() - start

    def on_train_aggregated(self, server_round: int, metrics: MetricRecord | None) -> None:
        if metrics is not None and protocol.TRAIN_LOSS in metrics:
            self._train_loss[server_round] = float(metrics[protocol.TRAIN_LOSS])

    def on_evaluate(self, server_round: int, metrics: MetricRecord | None, replies: list[Message]) -> None:
        now = time.perf_counter()
        seconds, self._round_started = now - self._round_started, now
        loss = float(metrics[protocol.EVAL_LOSS]) if metrics and protocol.EVAL_LOSS in metrics else None
        accuracy = float(metrics[protocol.EVAL_ACCURACY]) if metrics and protocol.EVAL_ACCURACY in metrics else None
        row = {
            "round": server_round,
            "loss": loss,
            "accuracy": accuracy,
            "train_loss": self._train_loss.get(server_round),
            "clients": len(self.ledger.clients_per_round.get(server_round, ())),
            # Who took part: with clients.per_round only a sample of the clients trains each round.
            "participants": " ".join(str(c) for c in sorted(self.ledger.clients_per_round.get(server_round, ()))),
            "eval_clients": sum(1 for r in replies if not r.has_error()),
            # Attacks submitted but not yet scored when the round ends: the attackers' backlog.
            "attacks_pending": self.ledger.attacks_submitted - self.ledger.attacks_finished,
            "seconds": round(seconds, 4),
            # Each participant's cumulative ε (δ, unit) after this round, aligned with participants.
            **spend_cells(self._spent.get(server_round, {})),
        }
        if self.writer is not None:
            self.writer.append_round(row)
        self.ledger.rounds_logged.add(server_round)
        self.ledger.round_seconds[server_round] = seconds
        self.progress.round_evaluated(server_round, loss, accuracy)
        self.collect()
        self.ledger.tap_seconds += time.perf_counter() - now

    # -- attacks -------------------------------------------------------------------------------------------
    def _submit(self, observation: Observation, context: ScoringContext,
                chosen: dict[int, set[int]] | None = None) -> None:
        if self.executor is None:
            return
        for index, attack in enumerate(self.scenario.attacks):
            if not scheduled(attack, context.round, context.client):
                continue
            if chosen is not None and index in chosen and context.client not in chosen[index]:
                continue  # this attack samples the round's updates, and this one was not drawn
            if len(context.indices) > attack.max_images:
                self._skip(attack.name, context, f"the update covers {len(context.indices)} images, over this "
                                                 f"attack's max_images={attack.max_images}")
            else:
                self.executor.submit(observation, attack, context)
                self.ledger.attacks_submitted += 1
                self.progress.attacks_submitted(1)
                # submit() may have finished others while it waited for a free slot: score them now.
                self._score_all(self.executor.completed())

    def _membership(self, observation: Observation, context: ScoringContext) -> None:
        """Membership inference and the canary audit run on every update they schedule, whatever its size (no
        ``max_images`` cap)."""
        if self.membership is not None:
            self.membership.submit(observation, context)
        if self.audit is not None:
            self.audit.submit(observation, context)

    def _skip(self, attack: str, context: ScoringContext, reason: str) -> None:
        """A scheduled attack not run: a row with status "skipped" and the reason, never a silent gap."""
        self.ledger.attacks_submitted += 1
        self.progress.attacks_submitted(1)
        self._score(AttackOutcome(context, attack, Reconstruction(None, status="skipped", reason=reason)))

    def collect(self) -> None:
        """Score the attacks that finished so far (never blocks)."""
        if self.executor is not None:
            self._score_all(self.executor.completed())

    def drain(self) -> None:
        """Wait for every attack and score it; the ServerApp calls this before it returns."""
        if self.executor is not None:
            self._score_all(self.executor.drain())
        if self.membership is not None:
            self.membership.drain()

    def _score_all(self, outcomes: list[AttackOutcome[ScoringContext]]) -> None:
        for outcome in outcomes:
            self._score(outcome)

    def _score(self, outcome: AttackOutcome[ScoringContext]) -> None:
        context = outcome.context
        true_images, true_labels = self.ground_truth(np.asarray(context.indices, dtype=np.int64))
        recon = outcome.reconstruction
        scored = score_reconstruction(
            recon, true_images, true_labels, context, attack=outcome.attack, threat=self.scenario.threat_model,
            success_psnr=self.scenario.output.success_psnr, reference=self.reference,
        )
        record = scored.record
        self.ledger.attacks_finished += 1
        self.ledger.attacks_failed += record.status == "failed"
        self.ledger.attacks_skipped += record.status == "skipped"
        self.progress.attack_finished(record.status)
        if self.writer is None:
            return
        self.writer.append_leakage(record)
        self.writer.append_diagnostics(record, recon.diagnostics)
        if self.scenario.output.save_images and scored.lined_up is not None:
            self.writer.save_reconstruction(context.round, context.client, outcome.attack, true_images,
                                            scored.lined_up)
