"""Build the :class:`Observation` a server would see, applying the threat model's grants.

Used by the server's interceptor (on real Flower replies), by ``fedleak attack`` and by tests, so the
attacker's view is assembled in exactly one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from fedleak.protocol import PublicMetadata
from fedleak.types import ModelSpec, Observation, ThreatModel, UpdateKind


def observe(
    model: ModelSpec,
    global_weights: dict[str, torch.Tensor],
    update: dict[str, torch.Tensor],
    kind: UpdateKind,
    threat: ThreatModel,
    metadata: PublicMetadata | Mapping[str, Any] | None = None,
    labels: torch.Tensor | None = None,
) -> Observation:
    """Keep only what the threat model grants: ungranted metadata (each field of :class:`PublicMetadata` names its
    grant) and labels are dropped here."""
    visible = PublicMetadata.of(metadata).visible_to(threat)
    return Observation(
        model=model,
        global_weights={k: v.detach().cpu().clone() for k, v in global_weights.items()},
        update={k: v.detach().cpu().clone() for k, v in update.items()},
        kind=kind,
        threat=threat,
        metadata=visible,
        labels=labels.detach().cpu().clone() if (threat.labels_known and labels is not None) else None,
    )
