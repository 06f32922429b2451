"""From an Observation to the matching loop and back: what DLG, iDLG and Inverting Gradients share around
:func:`~fedleak.attacks.matching.match_gradients`.

:func:`matching_problem` picks the model, the update function (one gradient, or K simulated local steps when the
threat model grants lr and K) and the target; :func:`random_init` draws starts; :func:`to_reconstruction` packages
the loop's result with its diagnostics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from fedleak.attacks.matching import (
    InitFn,
    MatchResult,
    UpdateFn,
    epochs_update_fn,
    gradient_update_fn,
    local_steps_update_fn,
)
from fedleak.types import Observation, Reconstruction


@dataclass
class MatchingProblem:
    """What an attack needs from an Observation to run the loop: model, update function, target, shapes."""

    model: nn.Module
    update_fn: UpdateFn
    target: dict[str, torch.Tensor]
    batch_size: int
    image_shape: tuple[int, int, int]
    num_classes: int
    update_mode: str
    notes: dict[str, Any] = field(default_factory=dict)


LocalStepsMode = Literal["auto", "pseudo_gradient", "simulate"]


def matching_problem(
    observation: Observation,
    device: torch.device,
    local_steps_mode: LocalStepsMode = "auto",
    batch_size: int | None = None,
) -> MatchingProblem:
    """Set up matching for one observation.

    For ``local_steps`` updates, ``simulate`` (the default when lr and K are granted) differentiates through K
    simulated SGD steps on the candidates and compares pseudo-gradients ``(w_0 − w_K)/(lr K)``;
    ``pseudo_gradient`` treats the observed pseudo-gradient as one gradient (an approximation for K > 1).
    The batch size comes from ``batch_size``, else the granted metadata, else the granted labels, else 1.
    """
    if local_steps_mode not in ("auto", "pseudo_gradient", "simulate"):
        raise ValueError(f"local_steps_mode must be auto, pseudo_gradient or simulate, got {local_steps_mode!r}")
    spec = observation.model
    model = observation.build_model().to(device)
    target = {k: v.to(device) for k, v in observation.gradient().items()}
    notes: dict[str, Any] = {}
    if batch_size is None:
        batch_size = observation.batch_size
        if batch_size is None and observation.labels is not None:
            batch_size = int(observation.labels.numel())
        if batch_size is None:
            batch_size, notes["batch_size_assumed"] = 1, True
    mode = "gradient"
    update_fn = gradient_update_fn(model, list(target))
    if observation.kind == "epochs":
        return _epochs_problem(observation, model, target, local_steps_mode, device, notes)
    if observation.kind == "local_steps":
        lr, steps = observation.metadata.lr, observation.metadata.local_steps
        granted = lr is not None and steps is not None
        if local_steps_mode == "simulate" and not granted:
            raise ValueError("local_steps_mode 'simulate' needs the client's lr and local_steps (threat-model grant)")
        if granted and local_steps_mode in ("auto", "simulate"):
            weights = {k: observation.global_weights[k].to(device) for k in target}
            update_fn = local_steps_update_fn(model, weights, int(steps), float(lr))
            mode = "simulate"
        else:
            mode = "pseudo_gradient"
    shape = (spec.in_channels, spec.image_size, spec.image_size)
    return MatchingProblem(model, update_fn, target, int(batch_size), shape, spec.num_classes, mode, notes)


def _epochs_problem(observation: Observation, model: nn.Module, target: dict[str, torch.Tensor], mode_setting: str,
                    device: torch.device, notes: dict[str, Any]) -> MatchingProblem:
    """An epoch update: the n images to reconstruct are every image the client trained on (num-examples, which a
    FedAvg server always sees). With lr, E and B granted, ``auto``/``simulate`` differentiate through E simulated
    epochs of minibatch SGD in one fixed order (the plain simulation; the client's shuffles are unknown);
    otherwise the observed pseudo-gradient is matched as one gradient of all n images."""
    meta = observation.metadata
    n = int(meta.num_examples)
    lr, epochs, batch_size = meta.lr, meta.local_epochs, meta.batch_size
    granted = None not in (lr, epochs, batch_size)
    if mode_setting == "simulate" and not granted:
        raise ValueError("local_steps_mode 'simulate' needs the client's lr, local_epochs and batch_size (grants)")
    if granted and mode_setting in ("auto", "simulate"):
        weights = {k: observation.global_weights[k].to(device) for k in target}
        update_fn = epochs_update_fn(model, weights, int(epochs), int(batch_size), float(lr))
        mode = "simulate_epochs"
    else:
        update_fn, mode = gradient_update_fn(model, list(target)), "pseudo_gradient"
    spec = observation.model
    shape = (spec.in_channels, spec.image_size, spec.image_size)
    return MatchingProblem(model, update_fn, target, n, shape, spec.num_classes, mode, notes)


def random_init(shape: tuple[int, ...], kind: Literal["normal", "uniform", "gray"]) -> InitFn:
    """A start drawer: ``normal`` (DLG's randn), ``uniform`` on [0, 1], or ``gray`` (0.5 plus small noise)."""
    if kind not in ("normal", "uniform", "gray"):
        raise ValueError(f"init must be normal, uniform or gray, got {kind!r}")

    def draw(generator: torch.Generator) -> torch.Tensor:
        if kind == "normal":
            return torch.randn(shape, generator=generator)
        if kind == "uniform":
            return torch.rand(shape, generator=generator)
        return 0.5 + 0.01 * torch.randn(shape, generator=generator)

    return draw


def to_reconstruction(result: MatchResult, problem: MatchingProblem, labels: torch.Tensor | None,
                      **diagnostics: Any) -> Reconstruction:
    """Wrap a loop result as the attack's Reconstruction (images clamped to [0, 1] on the CPU)."""
    diag = {**result.diagnostics(), "update_mode": problem.update_mode, **problem.notes, **diagnostics}
    if result.status == "failed" or result.images is None:
        return Reconstruction(None, labels=labels, status="failed", reason=result.reason, diagnostics=diag)
    images = result.images.detach().float().cpu().clamp(0, 1)
    # Snapshots are kept as uint8 during the loop (bounded memory); the figure wants pixels in [0, 1].
    history = [h.float() / 255 if h.dtype == torch.uint8 else h.float().clamp(0, 1) for h in result.history]
    return Reconstruction(images, labels=labels, diagnostics=diag, history=history)
