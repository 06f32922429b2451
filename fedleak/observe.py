"""Build the :class:`Observation` a server would see, applying the threat model's grants.

Used by the server's interceptor (on real Flower replies), by ``fedleak attack`` and by tests, so the
attacker's view is assembled in exactly one place.
"""

from __future__ import annotations

from typing import Any

import torch

from fedleak.types import ModelSpec, Observation, ThreatModel, UpdateKind

#: Metadata a client may publish, and the grant that makes each visible to the attacker.
_GRANTED_BY = {"lr": "local_hparams_known", "local_steps": "local_hparams_known", "local_epochs": "local_hparams_known",
               "batch_size": "batch_size_known"}


def observe(
    model: ModelSpec,
    global_weights: dict[str, torch.Tensor],
    update: dict[str, torch.Tensor],
    kind: UpdateKind,
    threat: ThreatModel,
    metadata: dict[str, Any] | None = None,
    labels: torch.Tensor | None = None,
) -> Observation:
    """Keep only what the threat model grants: ungranted metadata and labels are dropped here."""
    visible = {}
    for key, value in (metadata or {}).items():
        grant = _GRANTED_BY.get(key)
        if grant is None or getattr(threat, grant):
            visible[key] = value
    return Observation(
        model=model,
        global_weights={k: v.detach().cpu().clone() for k, v in global_weights.items()},
        update={k: v.detach().cpu().clone() for k, v in update.items()},
        kind=kind,
        threat=threat,
        metadata=visible,
        labels=labels.detach().cpu().clone() if (threat.labels_known and labels is not None) else None,
    )
