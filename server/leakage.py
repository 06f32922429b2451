"""The curious part of the server: turn each reply into an Observation, attack it, score what comes back.

The attacker's view is built by :func:`fedleak.observe.observe` from the update and the public metadata only; the
audit record (the batch's indices) goes into a :class:`ScoringContext` that stays here and reaches only the scorer,
which looks the true images up in the data source and compares each reconstruction with the whole dataset (mean-image
baseline, re-identification). Results are written as they arrive: one leakage.csv row and one diagnostics.jsonl line
per attack.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from flwr.app import ArrayRecord, Message, MetricRecord

from fedleak import protocol
from fedleak.config.schema import AttackConfig, Scenario
from fedleak.observe import observe
from fedleak.runtime import AttackExecutor, AttackOutcome
from fedleak.server.interceptor import ReplyTap
from fedleak.server.progress import RunProgress
from fedleak.server.secure_aggregation import (
    AGGREGATE,
    aggregate_indices,
    aggregate_metadata,
    defense_name,
    weighted_mean,
)
from fedleak.types import ModelSpec, Observation, Reconstruction

#: Look up (images, labels) of the data source at the given indices: ground truth, for the scorer only.
GroundTruth = Callable[[np.ndarray], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class ScoringContext:
    """The server's bookkeeping for one reply. Never sent to an attack."""

    round: int
    client: int
    indices: tuple[int, ...]
    batch_size: int
    local_steps: int
    lr: float
    update_kind: str
    defense: str = "none"
    dp_epsilon: float | None = None
    dp_delta: float | None = None
    dp_unit: str = ""
    local_epochs: int | None = None


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


def scheduled(attack: AttackConfig, server_round: int, client: int) -> bool:
    """Whether the scenario asks for ``attack`` on this client in this round (the aggregate under secure
    aggregation is attacked in every scheduled round: no single client's update exists to choose from)."""
    rounds_ok = attack.rounds == "all" or server_round in attack.rounds
    clients_ok = attack.clients == "all" or client in attack.clients or client == AGGREGATE
    return rounds_ok and clients_ok


#: Keeps the attack-sampling draw apart from the other per-round streams.
_ATTACK_SAMPLING_STREAM = 4


def sampled_updates(scenario: Scenario, server_round: int, clients: list[int]) -> dict[int, set[int]]:
    """For each attack (by position) that samples (``sample``/``count``), the clients whose update it attacks this
    round: drawn from the clients it schedules, reproducibly from (seed, round, attack)."""
    chosen = {}
    for index, attack in enumerate(scenario.attacks):
        if attack.sample is None and attack.count is None:
            continue
        eligible = [c for c in clients if scheduled(attack, server_round, c)]
        k = attack.count if attack.count is not None else math.ceil(attack.sample * len(eligible))
        rng = np.random.default_rng([scenario.seed % 2**64, server_round, index, _ATTACK_SAMPLING_STREAM])
        picked = rng.choice(len(eligible), size=min(k, len(eligible)), replace=False) if eligible else []
        chosen[index] = {eligible[i] for i in picked}
    return chosen


def distinct_in_order(indices) -> np.ndarray:
    """The distinct values of ``indices`` in order of first appearance."""
    values = np.asarray(indices, dtype=np.int64)
    _, first = np.unique(values, return_index=True)
    return values[np.sort(first)]


def reply_to_observation(
    reply: Message, sent: dict[str, torch.Tensor], spec: ModelSpec, scenario: Scenario, ground_truth: GroundTruth
) -> tuple[Observation, ScoringContext]:
    """Split one train reply into the attacker's view and the scorer's context."""
    content = reply.content
    public = content[protocol.PUBLIC]
    # The audit lists every image trained on, in order (an epoch update repeats each once per epoch): the images
    # to reconstruct are the distinct ones, in order of first use.
    indices = distinct_in_order(content[protocol.AUDIT][protocol.INDICES])
    context = ScoringContext(
        round=int(public["round"]), client=int(public["client"]), indices=tuple(int(i) for i in indices),
        batch_size=int(public["batch_size"]), local_steps=int(public["local_steps"]), lr=float(public["lr"]),
        update_kind=str(public["update_kind"]), defense=str(public.get("defense", "none")),
        local_epochs=(int(public["local_epochs"]) or None) if "local_epochs" in public else None, **dp_fields(public),
    )
    metadata = {
        "round": context.round, "client": context.client, "batch_size": context.batch_size,
        "local_steps": context.local_steps, "lr": context.lr,
    }
    # Epoch updates: E and n (num-examples, which every FedAvg server sees) let an attack simulate the epochs.
    if context.update_kind == "epochs":
        metadata.update(local_epochs=int(public["local_epochs"]), num_examples=int(public["num_examples"]))
    # Labels reach the attacker only under an explicit grant (a label side channel), looked up like ground truth.
    labels = ground_truth(indices)[1] if scenario.threat_model.labels_known else None
    observation = observe(
        spec, sent, content[protocol.UPDATE].to_torch_state_dict(), context.update_kind,  # type: ignore[arg-type]
        scenario.threat_model, metadata=metadata, labels=labels,
    )
    return observation, context


def dp_fields(public) -> dict:
    """ε, δ and unit ("record": DP-SGD, "update": local DP) from a reply's public metadata; empty when not sent."""
    def number(key: str) -> float | None:
        return float(public[key]) if key in public else None

    return {"dp_epsilon": number("dp_epsilon"), "dp_delta": number("dp_delta"),
            "dp_unit": str(public["dp_unit"]) if "dp_unit" in public else ""}


def aggregate_to_observation(
    replies: list[Message], sent: dict[str, torch.Tensor], spec: ModelSpec, scenario: Scenario,
    ground_truth: GroundTruth,
) -> tuple[Observation, ScoringContext]:
    """The attacker's single view of a round under secure aggregation, and the scorer's context (every batch)."""
    meta = aggregate_metadata(replies)
    indices = aggregate_indices(replies)
    context = ScoringContext(
        round=meta["round"], client=AGGREGATE, indices=tuple(int(i) for i in indices), batch_size=meta["batch_size"],
        local_steps=meta["local_steps"] or 0, lr=meta["lr"] or float("nan"), update_kind=meta["update_kind"],
        defense=defense_name(meta["defenses"]),
    )
    metadata = {k: meta[k] for k in ("round", "client", "batch_size", "local_steps", "lr") if meta[k] is not None}
    labels = ground_truth(indices)[1] if scenario.threat_model.labels_known else None
    observation = observe(
        spec, sent, weighted_mean(replies), context.update_kind,  # type: ignore[arg-type]
        scenario.threat_model, metadata=metadata, labels=labels,
    )
    return observation, context


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
    """

    def __init__(
        self, scenario: Scenario, spec: ModelSpec, ground_truth: GroundTruth, executor: AttackExecutor | None,
        writer=None, progress: RunProgress | None = None, dataset=None,
    ):
        from fedleak.metrics.reference import ReferenceSet

        self.reference = ReferenceSet.of(dataset)
        self.scenario = scenario
        self.spec = spec
        self.ground_truth = ground_truth
        self.executor = executor
        self.writer = writer
        self.progress = progress or RunProgress(scenario.training.rounds, scenario.clients.count, enabled=False)
        self.ledger = RunLedger()
        self._train_loss: dict[int, float] = {}
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
                clients.add(int(reply.content[protocol.PUBLIC]["client"]))
        if self.scenario.training.secure_aggregation and answered:
            args = (answered, weights, self.spec, self.scenario, self.ground_truth)
            self._submit(*aggregate_to_observation(*args))
        else:
            clients_answered = sorted(int(r.content[protocol.PUBLIC]["client"]) for r in answered)
            chosen = sampled_updates(self.scenario, server_round, clients_answered)
            for reply in answered:
                observation, context = reply_to_observation(reply, weights, self.spec, self.scenario,
                                                            self.ground_truth)
                self._submit(observation, context, chosen)
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

    def _score_all(self, outcomes: list[AttackOutcome]) -> None:
        for outcome in outcomes:
            self._score(outcome)

    def _score(self, outcome: AttackOutcome) -> None:
        from fedleak.scoring import score_reconstruction

        context: ScoringContext = outcome.context
        true_images, true_labels = self.ground_truth(np.asarray(context.indices, dtype=np.int64))
        recon = outcome.reconstruction

        def score(reconstruction: Reconstruction):
            return score_reconstruction(
                reconstruction, true_images, true_labels, round=context.round, client=context.client,
                attack=outcome.attack, batch_size=context.batch_size, local_steps=context.local_steps,
                lr=context.lr, update_kind=context.update_kind, defense=context.defense, dp_epsilon=context.dp_epsilon,
                dp_delta=context.dp_delta, dp_unit=context.dp_unit, threat=self.scenario.threat_model,
                success_psnr=self.scenario.output.success_psnr, reference=self.reference,
                local_epochs=context.local_epochs,
            )

        try:
            record = score(recon)
        except Exception as exc:  # noqa: BLE001 — e.g. an attack returned the wrong shape: a failed row, not a dead run
            # Keep the attack's diagnostics: they may say why its answer could not be scored.
            recon = Reconstruction(None, status="failed", reason=f"unscorable result: {type(exc).__name__}: {exc}",
                                   seconds=recon.seconds, diagnostics=recon.diagnostics)
            record = score(recon)
        ok = record.status == "ok"
        self.ledger.attacks_finished += 1
        self.ledger.attacks_failed += record.status == "failed"
        self.ledger.attacks_skipped += record.status == "skipped"
        self.progress.attack_finished(record.status)
        if self.writer is None:
            return
        self.writer.append_leakage(record)
        self.writer.append_diagnostics(record, recon.diagnostics)
        if ok and self.scenario.output.save_images and recon.images is not None:
            self.writer.save_reconstruction(context.round, context.client, outcome.attack, true_images, recon.images)
