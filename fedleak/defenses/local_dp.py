"""Local differential privacy on the update, shaped like Flower's ``LocalDpMod``: clip, then add Gaussian noise.

Noise comes from the client's seeded defense generator, so a run is reproducible. Accounting is in
:mod:`fedleak.privacy`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Literal

import torch
from pydantic import Field

from fedleak.defenses.base import Defense, Update, register_defense
from fedleak.privacy import PrivacySpent, calibrate_gaussian_sigma, local_dp_spent
from fedleak.rero import local_dp_rero

if TYPE_CHECKING:
    from fedleak.training import LocalTraining

PositiveFloat = Annotated[float, Field(gt=0)]


@register_defense
class LocalDpDefense(Defense):
    """Local differential privacy on the update, shaped like Flower's ``LocalDpMod``: clip the update (the
    gradient, or ``w_new − w_global``) to L2 norm ``clipping_norm`` over all tensors, then add Gaussian noise to
    every entry, calibrated so that each round's release is (``epsilon``, ``delta``)-DP with the analytic Gaussian
    mechanism (valid for every ε; Flower's classical formula holds only for ε < 1).

    ``neighbours`` states what the guarantee is about. ``replace_one`` (the default, the standard local-DP
    relation): any two clipped updates, sensitivity ``2 · clipping_norm``. ``zero_update``: the client's update
    against no update at all (add/remove of the whole update), sensitivity ``clipping_norm`` — weaker, explicit
    only. ``sensitivity`` overrides the Δ the noise is calibrated to (Flower's ``LocalDpMod`` asks its user for
    it); the ε reported is always accounted at the relation's own sensitivity, so a smaller Δ shows as a larger ε.
    The ε in results is composed over the rounds the client took part in (unit ``update(<relation>)``); see
    :mod:`fedleak.privacy`."""

    kind: Literal["local_dp"] = "local_dp"
    clipping_norm: PositiveFloat = 1.0
    epsilon: PositiveFloat = 1.0
    delta: Annotated[float, Field(gt=0, lt=1)] = 1e-5
    neighbours: Literal["replace_one", "zero_update"] = "replace_one"
    sensitivity: PositiveFloat | None = None

    def relation_sensitivity(self) -> float:
        """The L2 distance between two neighbouring clipped updates: 2C (replace-one) or C (zero update)."""
        return (2.0 if self.neighbours == "replace_one" else 1.0) * self.clipping_norm

    def noise_sensitivity(self) -> float:
        """The L2 sensitivity the noise is calibrated to: ``sensitivity``, by default the relation's."""
        return self.sensitivity if self.sensitivity is not None else self.relation_sensitivity()

    def noise_std(self) -> float:
        """The noise scale that makes one round's release (ε, δ)-DP: the analytic Gaussian mechanism (Balle & Wang
        2018, arXiv 1805.06530), valid for every ε. Flower's ``LocalDpMod`` uses the classical
        σ = Δ·sqrt(2 ln(1.25/δ))/ε, a valid bound only for ε < 1 that over-noises (or, at ε ≥ 1, may under-noise)
        elsewhere: here we depart from it."""
        return calibrate_gaussian_sigma(self.epsilon, self.delta, self.noise_sensitivity())

    def transform(self, update: Update, generator: torch.Generator) -> Update:
        norm = math.sqrt(sum(float(v.double().pow(2).sum()) for v in update.values()))
        scale = min(1.0, self.clipping_norm / norm) if norm > 0 else 1.0
        std = self.noise_std()
        return {
            k: v * scale + std * torch.randn(v.shape, generator=generator, dtype=torch.float64).to(v.dtype)
            for k, v in update.items()
        }

    def spent(self, plan: LocalTraining, shard_size: int, rounds: int) -> PrivacySpent:
        return local_dp_spent(self.noise_std(), self.relation_sensitivity(), self.delta, rounds,
                              relation=self.neighbours.replace("_", "-"))

    def rero(self, plan: LocalTraining, shard_size: int, rounds: int, kappa: float) -> float:
        """ReRo bound for one record: it moves the clipped update by up to twice ``clipping_norm``."""
        return local_dp_rero(self.noise_std(), self.clipping_norm, rounds, kappa)


def local_dp_std(defense: LocalDpDefense) -> float:
    """The noise scale of ``defense`` (see :meth:`LocalDpDefense.noise_std`)."""
    return defense.noise_std()
