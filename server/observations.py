"""A train reply split in two: the attacker's Observation and the scorer's ScoringContext.

The attacker's view is built by :func:`fedleak.observe.observe` from the update and the public metadata only; the
audit record (the batch's indices) goes into the :class:`~fedleak.types.ScoringContext`, which never reaches an
attack. Under secure aggregation the round's replies become one observation of their weighted mean.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from flwr.app import Message

from fedleak import protocol
from fedleak.config.schema import Scenario
from fedleak.observe import observe
from fedleak.server.secure_aggregation import (
    AGGREGATE,
    aggregate_indices,
    aggregate_metadata,
    defense_name,
    weighted_mean,
)
from fedleak.types import ModelSpec, Observation, ScoringContext

#: Look up (images, labels) of the data source at the given indices: ground truth, for the scorer only.
GroundTruth = Callable[[np.ndarray], tuple[torch.Tensor, torch.Tensor]]


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
