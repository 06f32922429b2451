"""Client-side defenses that transform an update after it is computed, before it leaves the client.

Each defense maps an update ``{name: tensor}`` to the update actually sent. For FedSGD the update is the gradient;
for FedAvg (``local_steps``) it is the new weights, and the defense acts on the change ``w_new − w_global`` (as
Flower's ``LocalDpMod`` does), so the sent weights are ``w_global + defended change``. Only floating-point tensors
are touched (integer buffers such as BatchNorm's step counter pass through).

DP-SGD is not here: it changes every training step, so it lives in :mod:`fedleak.clients.dp_sgd`.
Noise comes from a generator seeded with (scenario seed, client, round), so a run is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from fedleak.config.schema import Defense, LocalDpDefense, PruneDefense, QuantizeDefense
from fedleak.privacy import calibrate_gaussian_sigma
from fedleak.registry import Registry

Update = dict[str, torch.Tensor]
#: (floating tensors of the update, the defense's settings, a seeded generator) -> defended tensors
Transform = Callable[[Update, Defense, torch.Generator], Update]

#: The defenses that transform the finished update, by kind. Every other defense kind of the schema is ``none`` or
#: acts during training (:data:`DURING_TRAINING`); a test checks that each kind is handled exactly once.
TRANSFORMS: Registry[Transform] = Registry("defense transform")
#: Defense kinds applied inside the training loop rather than to its result: DP-SGD (clients/dp_sgd.py).
DURING_TRAINING = frozenset({"dp_sgd"})


def is_transform(defense: Defense) -> bool:
    """Whether the defense acts on the finished update (else it is ``none`` or acts during training)."""
    return defense.kind in TRANSFORMS


def defense_label(defense: Defense) -> str:
    """A short, stable name for result tables: the kind and its settings."""
    settings = defense.model_dump(exclude={"kind"}, exclude_none=True)
    if not settings:
        return defense.kind
    return defense.kind + "(" + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                          for k, v in settings.items()) + ")"


#: Keeps the defense's random stream apart from the batch draw, which seeds with (seed, client, round).
_DEFENSE_STREAM = 1


def noise_generator(seed: int, client: int, server_round: int) -> torch.Generator:
    """The generator of a client's defense noise in one round, from the scenario seed (never shared by clients)."""
    state = np.random.SeedSequence([seed % 2**64, client, server_round, _DEFENSE_STREAM]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


def apply_defense(
    update: Update, defense: Defense, generator: torch.Generator, sent: Update | None = None
) -> Update:
    """The update the client sends under ``defense``.

    Args:
        update: the computed update: a gradient, or (with ``sent``) the weights after local training.
        defense: the client's defense; ``none`` and ``dp_sgd`` return the update unchanged.
        generator: source of the defense's noise.
        sent: the global weights the client received, when ``update`` holds weights: the defense then acts on the
            change and adds it back.
    """
    if not is_transform(defense):
        return update
    floating = {k: v for k, v in update.items() if v.is_floating_point()}
    if sent is not None:
        floating = {k: v - sent[k] for k, v in floating.items()}
    defended = TRANSFORMS.get(defense.kind)(floating, defense, generator)
    if sent is not None:
        defended = {k: sent[k] + v for k, v in defended.items()}
    return {k: defended.get(k, v) for k, v in update.items()}


def local_dp_sensitivity(defense: LocalDpDefense) -> float:
    """The L2 sensitivity the noise is calibrated to: ``sensitivity``, by default the clipping norm."""
    return defense.sensitivity if defense.sensitivity is not None else defense.clipping_norm


def local_dp_std(defense: LocalDpDefense) -> float:
    """The noise scale that makes one round's release (ε, δ)-DP: the analytic Gaussian mechanism (Balle & Wang
    2018), valid for every ε. Flower's ``LocalDpMod`` uses the classical σ = Δ·sqrt(2 ln(1.25/δ))/ε, which is a
    valid bound only for ε < 1 and over-noises (or, at ε ≥ 1, may under-noise) elsewhere: here we depart from it."""
    return calibrate_gaussian_sigma(defense.epsilon, defense.delta, local_dp_sensitivity(defense))


@TRANSFORMS.register("local_dp")
def _local_dp(update: Update, defense: LocalDpDefense, generator: torch.Generator) -> Update:
    norm = math.sqrt(sum(float(v.double().pow(2).sum()) for v in update.values()))
    scale = min(1.0, defense.clipping_norm / norm) if norm > 0 else 1.0
    std = local_dp_std(defense)
    return {
        k: v * scale + std * torch.randn(v.shape, generator=generator, dtype=torch.float64).to(v.dtype)
        for k, v in update.items()
    }


@TRANSFORMS.register("prune")
def _prune(update: Update, defense: PruneDefense, generator: torch.Generator) -> Update:
    pruned = {}
    for k, v in update.items():
        drop = int(defense.ratio * v.numel())
        out = v.clone()
        if drop > 0:
            # The indices of the ``drop`` smallest magnitudes: exactly ``drop`` entries, ties broken by position.
            smallest = torch.topk(v.abs().reshape(-1), drop, largest=False).indices
            out.view(-1)[smallest] = 0
        pruned[k] = out
    return pruned


@TRANSFORMS.register("quantize")
def _quantize(update: Update, defense: QuantizeDefense, generator: torch.Generator) -> Update:
    levels = 2 ** (defense.bits - 1) - 1
    quantized = {}
    for k, v in update.items():
        peak = float(v.abs().max()) if v.numel() else 0.0
        if peak == 0:
            quantized[k] = v.clone()
            continue
        step = peak / levels
        quantized[k] = torch.round(v / step) * step
    return quantized
