"""What a curious server sees under secure aggregation: one aggregate per round, never a client's own update.

Secure aggregation (SecAgg+, Bell et al. 2020, arXiv 2009.08043) lets the server unmask only the sum of the
clients' (weighted) updates. This module builds the attacker's view of that outcome: the ``num-examples``-weighted
mean of the round's updates — exactly what FedAvg/FedSGD aggregate — as one Observation whose batch is every
client's batch together. It does not run the masking protocol: Flower (1.41 and 1.42) offers SecAgg+ only on its legacy
``NumPyClient`` path, whose mod fails with the Message API's ``@app.train`` handlers that the testbed uses; the
server's view, which is all the attacks depend on, is the same.
"""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import Message

from fedleak import protocol
from fedleak.protocol import PublicMetadata

#: The ``client`` of rows that attack the aggregate rather than one client.
AGGREGATE = -1


def weighted_mean(replies: list[Message]) -> dict[str, torch.Tensor]:
    """The ``num-examples``-weighted mean of the replies' updates (integer buffers: the first reply's)."""
    updates = [r.content[protocol.UPDATE].to_torch_state_dict() for r in replies]
    weights = [float(r.content[protocol.METRICS][protocol.NUM_EXAMPLES]) for r in replies]
    total = sum(weights)
    mean = {}
    for name, first in updates[0].items():
        if not first.is_floating_point():
            mean[name] = first.clone()
            continue
        mean[name] = sum(w * u[name].double() for w, u in zip(weights, updates, strict=True)).div(total).to(first.dtype)
    return mean


def aggregate_metadata(public: list[PublicMetadata]) -> PublicMetadata:
    """Public metadata of the aggregate: round, update kind, the summed batch size, and lr / local steps only where
    every client used the same (the aggregate of different local schedules matches no single simulation)."""
    lrs, steps = {p.lr for p in public}, {p.local_steps for p in public}
    return PublicMetadata(
        round=public[0].round, client=AGGREGATE, update_kind=public[0].update_kind,
        batch_size=sum(p.batch_size for p in public),
        lr=lrs.pop() if len(lrs) == 1 else None, local_steps=steps.pop() if len(steps) == 1 else None,
    )


def aggregate_indices(replies: list[Message]) -> np.ndarray:
    """Every client's batch indices, in reply order (the scorer matches images one-to-one anyway)."""
    return np.concatenate([np.asarray(r.content[protocol.AUDIT][protocol.INDICES], dtype=np.int64) for r in replies])


def defense_name(client_defenses: list[str]) -> str:
    """``secure_aggregation``, plus the clients' own defenses when any applied one."""
    applied = [d for d in client_defenses if d != "none"]
    return "secure_aggregation" + ("" if not applied else " + " + " / ".join(applied))
