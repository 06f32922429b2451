"""Gradient pruning, the defense studied in DLG (Zhu, Liu & Han 2019, "Deep Leakage from Gradients",
arXiv 1906.08935): in every tensor of the update, zero the ``ratio`` share of entries with the smallest magnitude."""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field

from fedleak.defenses.base import Defense, Update, register_defense


@register_defense
class PruneDefense(Defense):
    """Gradient pruning (the defense studied in DLG, arXiv 1906.08935): in every tensor of the update, zero the
    ``ratio`` share of entries with the smallest magnitude."""

    kind: Literal["prune"] = "prune"
    ratio: Annotated[float, Field(ge=0, lt=1)] = 0.9

    def transform(self, update: Update, generator: torch.Generator) -> Update:
        pruned = {}
        for k, v in update.items():
            drop = int(self.ratio * v.numel())
            out = v.clone()
            if drop > 0:
                # The indices of the ``drop`` smallest magnitudes: exactly ``drop`` entries, ties broken by position.
                smallest = torch.topk(v.abs().reshape(-1), drop, largest=False).indices
                out.view(-1)[smallest] = 0
            pruned[k] = out
        return pruned
