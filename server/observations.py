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
from fedleak.protocol import PublicMetadata
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
    public = public_of(reply)
    # The audit lists every image trained on, in order (an epoch update repeats each once per epoch): the images
    # to reconstruct are the distinct ones, in order of first use.
    indices = distinct_in_order(content[protocol.AUDIT][protocol.INDICES])
    context = ScoringContext(
        round=public.round, client=public.client, indices=tuple(int(i) for i in indices),
        batch_size=public.batch_size, local_steps=public.local_steps, lr=public.lr,
        update_kind=public.update_kind, defense=public.defense or "none", local_epochs=public.local_epochs or None,
        dp_epsilon=public.dp_epsilon, dp_delta=public.dp_delta, dp_unit=public.dp_unit or "",
    )
    # Epoch updates: E and n (num-examples, which every FedAvg server sees) let an attack simulate the epochs.
    epochs = context.update_kind == "epochs"
    metadata = PublicMetadata(
        round=public.round, client=public.client, batch_size=public.batch_size, local_steps=public.local_steps,
        lr=public.lr, local_epochs=public.local_epochs if epochs else None,
        num_examples=public.num_examples if epochs else None,
    )
    # Labels reach the attacker only under an explicit grant (a label side channel), looked up like ground truth.
    labels = ground_truth(indices)[1] if scenario.threat_model.labels_known else None
    observation = observe(
        spec, sent, content[protocol.UPDATE].to_torch_state_dict(), context.update_kind,  # type: ignore[arg-type]
        scenario.threat_model, metadata=metadata, labels=labels,
    )
    return observation, context


def public_of(reply: Message) -> PublicMetadata:
    """A train reply's public record."""
    return PublicMetadata.from_config_record(reply.content[protocol.PUBLIC])


def aggregate_to_observation(
    replies: list[Message], sent: dict[str, torch.Tensor], spec: ModelSpec, scenario: Scenario,
    ground_truth: GroundTruth,
) -> tuple[Observation, ScoringContext]:
    """The attacker's single view of a round under secure aggregation, and the scorer's context (every batch)."""
    meta = aggregate_metadata([public_of(r) for r in replies])
    indices = aggregate_indices(replies)
    context = ScoringContext(
        round=meta.round, client=AGGREGATE, indices=tuple(int(i) for i in indices), batch_size=meta.batch_size,
        local_steps=meta.local_steps or 0, lr=meta.lr or float("nan"), update_kind=meta.update_kind,
        defense=defense_name(sorted({public_of(r).defense or "none" for r in replies})),
    )
    metadata = PublicMetadata(round=meta.round, client=meta.client, batch_size=meta.batch_size,
                              local_steps=meta.local_steps, lr=meta.lr)
    labels = ground_truth(indices)[1] if scenario.threat_model.labels_known else None
    observation = observe(
        spec, sent, weighted_mean(replies), context.update_kind,  # type: ignore[arg-type]
        scenario.threat_model, metadata=metadata, labels=labels,
    )
    return observation, context
