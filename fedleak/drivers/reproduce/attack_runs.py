"""What the thesis and architecture entries share: one attack on one batch's gradient, scored.

The victim computes the one-batch gradient of its own client loss (``fedleak.training.batch_gradient``, which uses
the loss the model declares); the attacker sees it through ``observe`` with the stated threat model; the scorer
matches reconstructions to the true batch one-to-one before computing PSNR. Nothing here changes an attack.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from fedleak.attacks import get_attack
from fedleak.metrics import score_batch
from fedleak.observe import observe
from fedleak.protocol import PublicMetadata
from fedleak.training import batch_gradient
from fedleak.types import ModelSpec, Reconstruction, ThreatModel


@dataclass(frozen=True)
class AttackRun:
    """One attack on one batch: mean PSNR over the batch (NaN when the attack failed), the final gradient-matching
    distance where the attack has one, label accuracy where it returns labels, wall time and the reconstruction."""

    psnr: float
    matching_loss: float | None
    label_accuracy: float | None
    seconds: float
    reconstruction: Reconstruction
    #: ``Σ |g|²`` of the observed update: the matching distance of an all-zero candidate update, the scale that
    #: makes distances comparable across batch sizes and models.
    update_scale: float = math.nan

    @property
    def relative_loss(self) -> float:
        """The final matching distance over :attr:`update_scale` (NaN without a distance)."""
        return math.nan if self.matching_loss is None else self.matching_loss / self.update_scale


def victim_gradient(spec: ModelSpec, weights: dict[str, torch.Tensor] | None, images: torch.Tensor,
                    labels: torch.Tensor, seed: int) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    """The model (seeded initialisation, or ``weights``) and the gradient the client sends for this batch."""
    torch.manual_seed(seed)
    model = spec.build()
    if weights is not None:
        model.load_state_dict(weights)
    return model, batch_gradient(model, images, labels)


def attack_batch(attack: str, spec: ModelSpec, images: torch.Tensor, labels: torch.Tensor, seed: int, *,
                 weights: dict[str, torch.Tensor] | None = None, labels_known: bool = False,
                 **params: Any) -> AttackRun:
    """Run ``attack`` (registry name, ``params`` its config) on the gradient of one batch and score it."""
    model, update = victim_gradient(spec, weights, images, labels, seed)
    threat = ThreatModel(labels_known=labels_known)
    observation = observe(spec, model.state_dict(), update, "gradient", threat, PublicMetadata(batch_size=len(labels)),
                          labels=labels)
    start = time.perf_counter()
    result = get_attack(attack, seed=seed, **params)(observation)
    seconds = time.perf_counter() - start
    scale = float(sum((g.double() ** 2).sum() for g in update.values()))
    if result.images is None:
        return AttackRun(math.nan, None, None, seconds, result, scale)
    score = score_batch(result.images, result.labels, images, labels)
    loss = result.diagnostics.get("matching_loss")
    return AttackRun(score.psnr, None if loss is None else float(loss), score.label_accuracy, seconds, result,
                     scale)


def mean(values: list[float]) -> float:
    """Mean over the runs that returned images: a failed run's NaN is left out (the caller counts it); an exact
    reconstruction's infinite PSNR stays in, so the mean is infinite when one run was exact. NaN when none."""
    scored = [v for v in values if not math.isnan(v)]
    return sum(scored) / len(scored) if scored else math.nan
