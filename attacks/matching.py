"""The one gradient-matching loop: DLG, iDLG, Inverting Gradients and the hybrid correction all run it.

Given an update the server observed (a gradient, or a K-step pseudo-gradient) and a differentiable way to
produce the same kind of update from candidate inputs, optimise the candidates so the two updates agree:

    min_x  D(update(x, y), target) + tv_weight * s * TV(x) + extra_penalty(x)

where ``s`` is the distance's reference scale for L2 (``Σ |target|²``, see below) and 1 for the cosine distances:
the L2 objective's size differs by orders of magnitude between models and images (≈ 22 on an 8 px LeNet, 3000–4700
on DLG's LeNet at 64 px), so an absolute weight would not carry over; cosine distances are scale-free already.

* ``D`` is the squared L2 distance summed over layers (DLG, Zhu et al. 2019, arXiv 1906.08935), the cosine
  distance ``1 - <u, t> / (|u| |t|)`` of the whole concatenated update vector (``cosine``: Inverting Gradients,
  Geiping et al. 2020, arXiv 2003.14053, eq. 4), or that distance per layer summed over layers (``layer_cosine``:
  the hybrid method's correction, Chen & Campbell 2022, arXiv 2210.13231).
* Optimisers: L-BFGS as in DLG (lr 1, 20 evaluations per iteration; history 100 here, 300 in the DLG/iDLG
  attacks) or Adam as in Inverting Gradients (optionally on signed gradients, lr ×0.1 at 3/8, 5/8 and 7/8 of the
  iterations). Fixed-step L-BFGS (``lbfgs.py``) follows torch's update rules one evaluation at a time, so the stop
  checks below see every evaluation.
* CPU speed: one torch thread and torch's native convolution kernels (``cpu_kernels.py``; ``auto`` times both
  kernels and is an opt-in, because a choice made by timing makes the result depend on machine load).
* Box constraint, the ``parametrization`` option: ``none`` optimises raw pixels and leaves clamping to the end
  (what the DLG reference does; clamping inside L-BFGS would corrupt its curvature pairs); ``clamp`` projects
  onto [0, 1] after every step (Inverting Gradients); ``sigmoid`` optimises logits, pixels = sigmoid(z).
* Labels are either fixed (class indices or distributions) or learned jointly as soft labels (DLG).

Robustness, all deterministic from the caller's generator:
* restarts: ``restarts`` independent attempts, the one with the lowest final distance ``D`` wins (the gradient
  loss alone, without TV or penalty, as Inverting Gradients scores its trials);
* divergence: a non-finite objective or non-finite pixels abandon the attempt and a fresh start is drawn
  (at most ``max_redraws`` extra attempts); if every attempt diverges, the result is ``failed`` with a reason;
* no progress: an attempt from a drawn (random) start whose pixels all end within half a grey level of the start
  is treated like a diverged one, whatever its distance: its images are the noise it started from, and must never
  be reported as a reconstruction. A start tensor given by the caller (the hybrid's linear solve) is an informed
  guess, which the loop may rightly keep;
* stalls: optionally, an attempt whose objective is still above ``stall_ratio`` × its reference scale after
  ``stall_check`` iterations is abandoned and redrawn too (L-BFGS on DLG's sigmoid LeNet sometimes sits in a
  poor basin from the start; a fresh draw usually converges);
* step cap (fixed-step L-BFGS): no variable moves by more than ``max_step`` (one pixel range) in one step, and
  curvature pairs that stop giving a descent direction are dropped (``lbfgs.py``). On colour LFW faces at 64 px
  (DLG's LeNet, 200 classes, logits with std ≈ 10) the uncapped lr-1 steps threw pixels to ±1e6…1e9, the sigmoids
  saturated, the gradient vanished, and every attempt ended "without progress" at 0.4–1.1 of the scale;
* early stop: when the distance ``D`` falls under ``tolerance`` × its reference scale (checked at every evaluation
  for fixed-step L-BFGS), or improves by less than ``min_improvement`` (relative) during ``patience`` iterations,
  or when the optimiser no longer moves the inputs (counted as a stall if the objective is above the stall bar).

The reference scale makes thresholds independent of the model and of the start: for L2 it is ``Σ |target|²``
(the objective of a zero update), for ``cosine`` 1 and for ``layer_cosine`` the number of matched layers (the
distance of orthogonal updates). Stall and tolerance checks look at ``D`` alone, so a TV prior does not hide
convergence.

On DLG's LeNet (first 20 CIFAR-10 test images), an L2 objective of 1e-7 of that scale meant 27–38 dB PSNR,
2e-8 meant 32–44 dB and 1e-8 34–50 dB: the mapping depends on the image. On colour faces at 64 px the gradient
does not fix the image: a 12.6 dB image matched every layer to 6e-8 (see ``dlg.py``).

History: the images every ``snapshot_every`` optimiser iterations (and at the start and the end), as uint8, at most
``snapshot_limit`` of them: past the limit every other snapshot is dropped and the interval doubled, so memory
stays bounded on long runs. An optimiser iteration is one Adam step, or one L-BFGS iteration in torch's sense (one
gradient evaluation with the fixed step; ``iterations`` counts DLG's outer steps of ``lbfgs_inner`` of them), so a
DLG run that converges within 10 outer steps still shows its progress.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from fedleak.attacks.cpu_kernels import conv_kernels, pick_kernels, torch_threads
from fedleak.attacks.match_config import (  # noqa: F401 (re-exported: the attacks import them from here)
    DISTANCES,
    InitFn,
    MatchConfig,
    UpdateFn,
    check_choice,
)
from fedleak.attacks.matching_attempt import Attempt, reference_scale, update_distance  # noqa: F401 (re-exported)
from fedleak.training import loss_of, simulate_epochs, simulate_local_steps


@dataclass
class MatchResult:
    """Outcome of :func:`match_gradients`: the best attempt's images and labels, plus what happened.

    ``loss`` is the whole objective (distance + TV + penalty) of the chosen attempt, ``distance`` its ``D`` alone.
    ``history`` holds uint8 snapshots (B×C×H×W, pixels × 255) taken at ``history_iterations``.
    """

    images: torch.Tensor | None
    labels: torch.Tensor | None
    loss: float
    status: Literal["ok", "failed"] = "ok"
    reason: str = ""
    attempts: list[dict[str, Any]] = field(default_factory=list)
    history: list[torch.Tensor] = field(default_factory=list)
    history_iterations: list[int] = field(default_factory=list)
    #: The matching distance at each snapshot (nan before the first evaluation), for the loss curve.
    history_losses: list[float] = field(default_factory=list)
    distance: float = math.inf
    #: The CPU convolution kernels the loop ran on (None on GPU) and the setting that chose them.
    conv_kernels: str | None = None
    conv_kernels_setting: str | None = None

    @property
    def diverged(self) -> int:
        return sum(a["outcome"] == "diverged" for a in self.attempts)

    def diagnostics(self) -> dict[str, Any]:
        """Summary fit for ``Reconstruction.diagnostics``."""
        return {
            "matching_loss": self.distance,
            "objective": self.loss,
            "attempts": len(self.attempts),
            "diverged_attempts": self.diverged,
            "stalled_attempts": sum(a["outcome"] == "stalled" for a in self.attempts),
            "unmoved_attempts": sum(a["outcome"] == "unmoved" for a in self.attempts),
            "evaluations": sum(a["evaluations"] for a in self.attempts),
            "stop_reasons": [a["stop"] for a in self.attempts],
            "capped_steps": sum(a.get("capped_steps", 0) for a in self.attempts),
            "lbfgs_resets": sum(a.get("lbfgs_resets", 0) for a in self.attempts),
            "conv_kernels": self.conv_kernels,
            "conv_kernels_setting": self.conv_kernels_setting,
            "history_iterations": list(self.history_iterations),
            "history_losses": list(self.history_losses),
        }


def gradient_update_fn(model: nn.Module, names: list[str] | None = None) -> UpdateFn:
    """The client's one-batch gradient (the model's own client loss, ``loss_of``), differentiable in the inputs."""
    named = [(n, p) for n, p in model.named_parameters() if names is None or n in names]
    if not named:
        raise ValueError("no model parameter matches the observed update")
    keys, params = zip(*named, strict=True)
    loss_fn = loss_of(model)

    def update(images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        loss = loss_fn(model(images), labels)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        return dict(zip(keys, grads, strict=True))

    return update


def local_steps_update_fn(model: nn.Module, weights: dict[str, torch.Tensor], steps: int, lr: float) -> UpdateFn:
    """K simulated SGD steps from ``weights``, returned as the pseudo-gradient ``(w_0 - w_K) / (lr K)``.

    Matching this against the observed ``Observation.gradient()`` compares the same quantity on both sides.
    """
    if steps < 1 or lr <= 0:
        raise ValueError(f"local-steps simulation needs steps >= 1 and lr > 0, got steps={steps}, lr={lr}")
    start = {k: v.detach() for k, v in weights.items()}
    scale = 1.0 / (lr * steps)

    def update(images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        final = simulate_local_steps(model, start, images, labels, steps, lr)
        return {k: (start[k] - final[k]) * scale for k in final}

    return update


def epochs_update_fn(model: nn.Module, weights: dict[str, torch.Tensor], epochs: int, batch_size: int,
                     lr: float) -> UpdateFn:
    """E simulated epochs of minibatch SGD over the candidates (a fixed order, see
    :func:`fedleak.training.simulate_epochs`), returned as the pseudo-gradient ``(w_0 - w_end) / (lr · steps)``."""
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"epoch simulation needs epochs, batch_size >= 1 and lr > 0, got {epochs}, {batch_size}, {lr}")
    start = {k: v.detach() for k, v in weights.items()}

    def update(images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        final, steps = simulate_epochs(model, start, images, labels, epochs, batch_size, lr)
        return {k: (start[k] - final[k]) / (lr * steps) for k in final}

    return update


def match_gradients(
    model: nn.Module | UpdateFn,
    target: dict[str, torch.Tensor],
    init: torch.Tensor | InitFn,
    labels: torch.Tensor | None,
    config: MatchConfig,
    *,
    num_classes: int | None = None,
    param_filter: Callable[[str], bool] | None = None,
    extra_penalty: Callable[[torch.Tensor], torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> MatchResult:
    """Optimise inputs (and, when ``labels`` is None, soft labels) so their update matches ``target``.

    Args:
        model: a module (its client-loss gradient is the update) or an :data:`UpdateFn`.
        target: the observed update, keyed by parameter name; its device is where the loop runs.
        init: a starting tensor B×… or a function drawing one from a generator. A tensor is used as-is by the
            first attempt; later attempts perturb it (``redraw_noise``).
        labels: class indices (B,) or distributions (B×C) kept fixed, or None to learn soft labels (DLG).
        config: loop settings.
        num_classes: needed when labels are learned.
        param_filter: keep only the target entries whose name passes (e.g. the layers above a hybrid cut).
        extra_penalty: added to the objective, a function of the current inputs (e.g. a linear-system residual).
        generator: source of all randomness (seeded by the caller for determinism).

    Returns:
        The best attempt by final matching objective; ``failed`` when every attempt diverged.
    """
    target = {k: v.detach() for k, v in target.items() if param_filter is None or param_filter(k)}
    if not target:
        raise ValueError("nothing to match: the parameter filter removed every entry of the target")
    device = next(iter(target.values())).device
    update_fn = gradient_update_fn(model, list(target)) if isinstance(model, nn.Module) else model
    if labels is None and num_classes is None:
        raise ValueError("learning soft labels needs num_classes")
    with torch_threads(config.cpu_threads, device):
        if device.type != "cpu":
            return _match(update_fn, target, init, labels, config, num_classes, extra_penalty, generator, device)
        # The probe is built only when timing is asked for: it draws a start, and a fixed choice times nothing.
        probe = _probe(update_fn, target, init, labels, num_classes, config) if config.conv_kernels == "auto" else None
        kernels = pick_kernels(config.conv_kernels, probe)
        with conv_kernels(kernels):
            result = _match(update_fn, target, init, labels, config, num_classes, extra_penalty, generator, device)
        result.conv_kernels, result.conv_kernels_setting = kernels, config.conv_kernels
        return result


def _probe(
    update_fn: UpdateFn,
    target: dict[str, torch.Tensor],
    init: torch.Tensor | InitFn,
    labels: torch.Tensor | None,
    num_classes: int | None,
    config: MatchConfig,
) -> Callable[[], object]:
    """One evaluation of the objective's gradient at a start point, for timing the CPU kernels.

    The start comes from its own generator, so timing does not change the caller's random stream.
    """
    start = _draw_start(init, torch.Generator().manual_seed(0), 0, config).requires_grad_(True)
    if labels is None:
        labels = torch.full((start.shape[0], num_classes), 1.0 / num_classes)

    def evaluate() -> object:
        value = update_distance(update_fn(start, labels), target, config.distance)
        return torch.autograd.grad(value, [start])

    return evaluate


#: A drawn start whose pixels all moved by less than this (half a grey level of 255) ended where it started.
UNMOVED = 0.5 / 255


def _match(
    update_fn: UpdateFn,
    target: dict[str, torch.Tensor],
    init: torch.Tensor | InitFn,
    labels: torch.Tensor | None,
    config: MatchConfig,
    num_classes: int | None,
    extra_penalty: Callable[[torch.Tensor], torch.Tensor] | None,
    generator: torch.Generator | None,
    device: torch.device,
) -> MatchResult:
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    fixed_labels = labels.to(device) if labels is not None else None
    drawn = callable(init) and not isinstance(init, torch.Tensor)

    attempts: list[dict[str, Any]] = []
    best: Attempt | None = None
    completed = 0
    while completed < config.restarts and len(attempts) < config.restarts + config.max_redraws:
        start = _draw_start(init, generator, len(attempts), config).to(device)
        label_logits = None
        if fixed_labels is None:
            label_logits = torch.randn(start.shape[0], num_classes, generator=generator).to(device)
        attempt = Attempt(update_fn, target, start, fixed_labels, label_logits, config, extra_penalty)
        record = attempt.run()
        record["attempt"] = len(attempts)
        attempts.append(record)
        if drawn and record["outcome"] != "diverged" and record["moved"] < UNMOVED:
            # A random start that did not move is noise, whatever its distance says: redraw, never a candidate.
            record["outcome"], record["stop"] = "unmoved", f"{record['stop']}; ended where it started"
        if record["outcome"] in ("diverged", "unmoved"):
            continue
        if record["outcome"] == "ok":
            completed += 1
        # Stalled attempts stay candidates (they are finite), but a fresh draw is tried. The winner is chosen on
        # the distance alone: a prior or penalty must not decide which start matched the update best.
        if best is None or record["loss"] < best.record["loss"]:
            best = attempt

    if best is None:
        reasons = "; ".join(a["stop"] for a in attempts)
        return MatchResult(None, None, math.inf, "failed", f"all {len(attempts)} attempts diverged or ended where "
                           f"they started, no pixel moving by half a grey level ({reasons})", attempts=attempts)
    out_labels = fixed_labels if fixed_labels is not None else best.soft_labels()
    return MatchResult(best.images(), out_labels, best.record["objective"], attempts=attempts,
                       history=best.snapshots.images, history_iterations=best.snapshots.iterations,
                       history_losses=best.snapshots.losses, distance=best.record["loss"])



def _draw_start(init: torch.Tensor | InitFn, generator: torch.Generator, attempt: int, config: MatchConfig):
    if callable(init) and not isinstance(init, torch.Tensor):
        return init(generator).float()
    base = init.detach().float().cpu()
    if attempt == 0:
        return base.clone()
    scale = config.redraw_noise * (float(base.std()) if base.numel() > 1 else 1.0) or config.redraw_noise
    return base + scale * torch.randn(base.shape, generator=generator)
