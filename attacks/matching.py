"""The one gradient-matching loop: DLG, iDLG, Inverting Gradients and the hybrid correction all run it.

Given an update the server observed (a gradient, or a K-step pseudo-gradient) and a differentiable way to
produce the same kind of update from candidate inputs, optimise the candidates so the two updates agree:

    min_x  D(update(x, y), target) + tv_weight * TV(x) + extra_penalty(x)

* ``D`` is the squared L2 distance summed over layers (DLG, Zhu et al. 2019, arXiv 1906.08935) or the per-layer
  cosine distance ``1 - <u, t> / (|u| |t|)`` summed over layers (Inverting Gradients, Geiping et al. 2020,
  arXiv 2003.14053).
* Optimisers: L-BFGS as in DLG (lr 1, 20 evaluations per iteration; history 100 here, 300 in the DLG/iDLG
  attacks) or Adam as in Inverting Gradients (optionally on signed gradients, lr ×0.1 at 3/8, 5/8 and 7/8 of the
  iterations). Fixed-step L-BFGS (``lbfgs.py``) follows torch's update rules one evaluation at a time, so the stop
  checks below see every evaluation.
* CPU speed: one torch thread and the faster of oneDNN / native convolution kernels (``cpu_kernels.py``).
* Box constraint, the ``parametrization`` option: ``none`` optimises raw pixels and leaves clamping to the end
  (what the DLG reference does; clamping inside L-BFGS would corrupt its curvature pairs); ``clamp`` projects
  onto [0, 1] after every step (Inverting Gradients); ``sigmoid`` optimises logits, pixels = sigmoid(z).
* Labels are either fixed (class indices or distributions) or learned jointly as soft labels (DLG).

Robustness, all deterministic from the caller's generator:
* restarts: ``restarts`` independent attempts, the one with the lowest final matching objective wins;
* divergence: a non-finite objective or non-finite pixels abandon the attempt and a fresh start is drawn
  (at most ``max_redraws`` extra attempts); if every attempt diverges, the result is ``failed`` with a reason;
* stalls: optionally, an attempt whose objective is still above ``stall_ratio`` × its reference scale after
  ``stall_check`` iterations is abandoned and redrawn too (L-BFGS on DLG's sigmoid LeNet sometimes sits in a
  poor basin from the start; a fresh draw usually converges);
* early stop: when the objective falls under ``tolerance`` × its reference scale (checked at every evaluation
  for fixed-step L-BFGS), or improves by less than ``min_improvement`` (relative) during ``patience`` iterations,
  or when the optimiser no longer moves the inputs (counted as a stall if the objective is above the stall bar).

The reference scale makes thresholds independent of the model and of the start: for L2 it is ``Σ |target|²``
(the objective of a zero update), for cosine the number of matched layers (the objective of orthogonal updates).
On DLG's LeNet (first 20 CIFAR-10 test images), an L2 objective of 1e-7 of that scale meant 27–38 dB PSNR,
2e-8 meant 32–44 dB and 1e-8 34–50 dB: the mapping depends on the image.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from fedleak.attacks.cpu_kernels import CHOICES as KERNEL_CHOICES
from fedleak.attacks.cpu_kernels import conv_kernels, pick_kernels
from fedleak.attacks.lbfgs import CompactLBFGS
from fedleak.attacks.priors import total_variation
from fedleak.training import client_loss, simulate_local_steps

#: Maps (images, labels) to an update keyed by parameter name, differentiably w.r.t. the images.
UpdateFn = Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]
#: Draws a starting point from a generator (on the CPU; the loop moves it to the target's device).
InitFn = Callable[[torch.Generator], torch.Tensor]


@dataclass
class MatchConfig:
    """Settings of the matching loop. Defaults are DLG's (L2, L-BFGS), sized for a CPU."""

    distance: Literal["l2", "cosine"] = "l2"
    optimizer: Literal["lbfgs", "adam"] = "lbfgs"
    iterations: int = 300
    lr: float = 1.0
    #: L-BFGS: inner iterations per outer iteration (torch's ``max_iter``) and curvature history length.
    lbfgs_inner: int = 20
    lbfgs_history: int = 100
    #: L-BFGS line search: ``none`` (DLG's fixed step) or ``strong_wolfe``.
    line_search: Literal["none", "strong_wolfe"] = "none"
    #: Adam: use the sign of the gradient (Inverting Gradients) and the ×0.1 step schedule.
    signed_gradients: bool = False
    lr_schedule: bool = False
    tv_weight: float = 0.0
    parametrization: Literal["none", "clamp", "sigmoid"] = "none"
    restarts: int = 1
    max_redraws: int = 3
    #: Stop when objective <= tolerance × reference scale (0 disables).
    tolerance: float = 0.0
    #: Stop when the best objective improved by less than ``min_improvement`` (relative) in ``patience`` iterations.
    patience: int = 0
    min_improvement: float = 1e-3
    #: Abandon an attempt whose objective exceeds ``stall_ratio`` × reference after ``stall_check`` iterations.
    stall_check: int = 0
    stall_ratio: float = 1e-3
    #: Keep a copy of the images every N iterations (0: never).
    snapshot_every: int = 0
    #: With a tensor start, later attempts start from it plus Gaussian noise of this many standard deviations.
    redraw_noise: float = 0.5
    #: Torch CPU threads during the loop (restored afterwards); None keeps the process setting. One thread is the
    #: default because one evaluation of a small model is too little work to share: on a busy 2-core machine two
    #: threads made an 8×8 LeNet run six times slower. Ignored on GPU.
    cpu_threads: int | None = 1
    #: CPU convolution kernels: ``auto`` times one evaluation with oneDNN and with torch's native kernels and keeps
    #: the faster (native was 1.4× faster on DLG's LeNet, oneDNN 1.9× faster on ResNet-18); see ``cpu_kernels.py``.
    conv_kernels: Literal["auto", "onednn", "native"] = "auto"

    def __post_init__(self) -> None:
        if self.distance not in ("l2", "cosine"):
            raise ValueError(f"distance must be 'l2' or 'cosine', got {self.distance!r}")
        if self.optimizer not in ("lbfgs", "adam"):
            raise ValueError(f"optimizer must be 'lbfgs' or 'adam', got {self.optimizer!r}")
        if self.parametrization not in ("none", "clamp", "sigmoid"):
            raise ValueError(f"parametrization must be 'none', 'clamp' or 'sigmoid', got {self.parametrization!r}")
        check_choice("conv_kernels", self.conv_kernels, KERNEL_CHOICES)
        if self.line_search not in ("none", "strong_wolfe"):
            raise ValueError(f"line_search must be 'none' or 'strong_wolfe', got {self.line_search!r}")
        if self.iterations < 1 or self.restarts < 1 or self.max_redraws < 0:
            raise ValueError("iterations and restarts must be >= 1 and max_redraws >= 0")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


@dataclass
class MatchResult:
    """Outcome of :func:`match_gradients`: the best attempt's images and labels, plus what happened."""

    images: torch.Tensor | None
    labels: torch.Tensor | None
    loss: float
    status: Literal["ok", "failed"] = "ok"
    reason: str = ""
    attempts: list[dict[str, Any]] = field(default_factory=list)
    history: list[torch.Tensor] = field(default_factory=list)
    #: The CPU convolution kernels the loop ran on (None on GPU).
    conv_kernels: str | None = None

    @property
    def diverged(self) -> int:
        return sum(a["outcome"] == "diverged" for a in self.attempts)

    def diagnostics(self) -> dict[str, Any]:
        """Summary fit for ``Reconstruction.diagnostics``."""
        return {
            "matching_loss": self.loss,
            "attempts": len(self.attempts),
            "diverged_attempts": self.diverged,
            "stalled_attempts": sum(a["outcome"] == "stalled" for a in self.attempts),
            "evaluations": sum(a["evaluations"] for a in self.attempts),
            "stop_reasons": [a["stop"] for a in self.attempts],
            "conv_kernels": self.conv_kernels,
        }


def gradient_update_fn(model: nn.Module, names: list[str] | None = None) -> UpdateFn:
    """The client's one-batch gradient (``client_loss``) of ``model``, differentiable w.r.t. the inputs."""
    named = [(n, p) for n, p in model.named_parameters() if names is None or n in names]
    if not named:
        raise ValueError("no model parameter matches the observed update")
    keys, params = zip(*named, strict=True)

    def update(images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        loss = client_loss(model(images), labels)
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


def update_distance(update: dict[str, torch.Tensor], target: dict[str, torch.Tensor], kind: str) -> torch.Tensor:
    """Squared L2 summed over layers, or per-layer cosine distance summed over layers."""
    total = torch.zeros((), device=next(iter(target.values())).device)
    for name, t in target.items():
        u = update[name]
        if kind == "l2":
            total = total + (u - t).pow(2).sum()
        else:
            cos = (u * t).sum() / (u.norm() * t.norm() + 1e-12)
            total = total + (1 - cos)
    return total


def reference_scale(target: dict[str, torch.Tensor], distance: str) -> float:
    """The objective's natural scale: ``Σ |t|²`` for L2, the number of layers for cosine (never zero)."""
    if distance == "l2":
        return max(sum(float(t.detach().double().pow(2).sum()) for t in target.values()), 1e-30)
    return float(len(target))


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
    previous_threads = torch.get_num_threads()
    if config.cpu_threads and device.type == "cpu":
        torch.set_num_threads(config.cpu_threads)
    try:
        if device.type != "cpu":
            return _match(update_fn, target, init, labels, config, num_classes, extra_penalty, generator, device)
        kernels = pick_kernels(config.conv_kernels, _probe(update_fn, target, init, labels, num_classes, config))
        with conv_kernels(kernels):
            result = _match(update_fn, target, init, labels, config, num_classes, extra_penalty, generator, device)
        result.conv_kernels = kernels
        return result
    finally:
        torch.set_num_threads(previous_threads)


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

    attempts: list[dict[str, Any]] = []
    best: tuple[float, torch.Tensor, torch.Tensor | None, list[torch.Tensor]] | None = None
    completed = 0
    while completed < config.restarts and len(attempts) < config.restarts + config.max_redraws:
        start = _draw_start(init, generator, len(attempts), config).to(device)
        label_logits = None
        if fixed_labels is None:
            label_logits = torch.randn(start.shape[0], num_classes, generator=generator).to(device)
        record, images, soft, history = _run_attempt(
            update_fn, target, start, fixed_labels, label_logits, config, extra_penalty
        )
        record["attempt"] = len(attempts)
        attempts.append(record)
        if record["outcome"] == "diverged":
            continue
        if record["outcome"] == "ok":
            completed += 1
        # Stalled attempts stay candidates (they are finite), but a fresh draw is tried.
        if best is None or record["loss"] < best[0]:
            best = (record["loss"], images, soft, history)

    if best is None:
        reasons = "; ".join(a["stop"] for a in attempts)
        return MatchResult(None, None, math.inf, "failed", f"all {len(attempts)} attempts diverged ({reasons})",
                           attempts=attempts)
    loss, images, soft, history = best
    out_labels = fixed_labels if fixed_labels is not None else soft
    return MatchResult(images, out_labels, loss, attempts=attempts, history=history)


def _draw_start(init: torch.Tensor | InitFn, generator: torch.Generator, attempt: int, config: MatchConfig):
    if callable(init) and not isinstance(init, torch.Tensor):
        return init(generator).float()
    base = init.detach().float().cpu()
    if attempt == 0:
        return base.clone()
    scale = config.redraw_noise * (float(base.std()) if base.numel() > 1 else 1.0) or config.redraw_noise
    return base + scale * torch.randn(base.shape, generator=generator)


def _to_variable(start: torch.Tensor, parametrization: str) -> torch.Tensor:
    if parametrization == "sigmoid":
        start = torch.logit(start.clamp(1e-4, 1 - 1e-4))
    elif parametrization == "clamp":
        start = start.clamp(0, 1)
    return start.contiguous().requires_grad_(True)


def _images(variable: torch.Tensor, parametrization: str) -> torch.Tensor:
    return torch.sigmoid(variable) if parametrization == "sigmoid" else variable


def _run_attempt(
    update_fn: UpdateFn,
    target: dict[str, torch.Tensor],
    start: torch.Tensor,
    fixed_labels: torch.Tensor | None,
    label_logits: torch.Tensor | None,
    config: MatchConfig,
    extra_penalty: Callable[[torch.Tensor], torch.Tensor] | None,
) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor | None, list[torch.Tensor]]:
    """One attempt from one start. Returns (record, images, soft labels or None, snapshots)."""
    variable = _to_variable(start, config.parametrization)
    variables = [variable]
    if label_logits is not None:
        label_logits = label_logits.contiguous().requires_grad_(True)
        variables.append(label_logits)
    evaluations = 0
    last = math.inf

    def objective() -> torch.Tensor:
        images = _images(variable, config.parametrization)
        labels = fixed_labels if label_logits is None else torch.softmax(label_logits, dim=-1)
        value = update_distance(update_fn(images, labels), target, config.distance)
        if config.tv_weight:
            value = value + config.tv_weight * total_variation(images)
        if extra_penalty is not None:
            value = value + extra_penalty(images)
        return value

    def closure() -> torch.Tensor:
        nonlocal evaluations, last
        evaluations += 1
        value = objective()
        grads = torch.autograd.grad(value, variables)
        for var, grad in zip(variables, grads, strict=True):
            var.grad = grad.sign() if config.signed_gradients else grad
        last = float(value.detach())
        return value.detach()

    optimizer, scheduler = _make_optimizer(variables, config)
    # Fixed-step L-BFGS runs one evaluation per torch step: its state (history, direction) persists between steps,
    # so ``lbfgs_inner`` one-evaluation steps follow exactly the path of one ``max_iter=lbfgs_inner`` step, but the
    # stop and divergence checks see every evaluation instead of every ``lbfgs_inner``-th.
    per_evaluation = config.optimizer == "lbfgs" and config.line_search == "none"
    sub_steps = config.lbfgs_inner if per_evaluation else 1
    history: list[torch.Tensor] = []
    reference = reference_scale(target, config.distance)
    best_seen, best_at = math.inf, 0
    stop, outcome, done = "max_iterations", "ok", 0

    def step_checks() -> tuple[str, str] | None:
        if not math.isfinite(last) or not torch.isfinite(variable).all():
            return f"non-finite objective or pixels at iteration {done}", "diverged"
        if config.tolerance and last <= config.tolerance * reference:
            return f"converged at iteration {done} (evaluation {evaluations})", "ok"
        return None

    for it in range(config.iterations):
        done = it + 1
        ended = None
        for _ in range(sub_steps):
            before = [v.detach().clone() for v in variables]
            optimizer.step(closure)
            if scheduler is not None:
                scheduler.step()
            if config.parametrization == "clamp":
                with torch.no_grad():
                    variable.clamp_(0, 1)
            ended = step_checks()
            if ended is None and all(torch.equal(b, v) for b, v in zip(before, variables, strict=True)):
                # L-BFGS returns without moving once its gradient or its step is negligible: nothing more to gain.
                # Stuck above the stall bar counts as a stall (a fresh draw may do better).
                stuck = bool(config.stall_check) and last > config.stall_ratio * reference
                ended = f"optimizer made no progress at iteration {done}", "stalled" if stuck else "ok"
            if ended is not None:
                break
        diverged = ended is not None and ended[1] == "diverged"
        if config.snapshot_every and done % config.snapshot_every == 0 and not diverged:
            history.append(_images(variable, config.parametrization).detach().cpu().clone())
        if ended is not None:
            stop, outcome = ended
            break
        if config.stall_check and done == config.stall_check and last > config.stall_ratio * reference:
            stop, outcome = f"stalled at iteration {done} (objective {last / reference:.2g} of scale)", "stalled"
            break
        if last < best_seen * (1 - config.min_improvement):
            best_seen, best_at = last, done
        elif config.patience and done - best_at >= config.patience:
            stop = f"plateau at iteration {done}"
            break

    final = math.inf
    if outcome != "diverged":
        # The optimiser's last step moved the variables after its last evaluation: score where they are now.
        with torch.enable_grad():
            final = float(objective().detach())
        if not math.isfinite(final):
            stop, outcome = f"non-finite objective after iteration {done}", "diverged"
    images = _images(variable, config.parametrization).detach()
    soft = torch.softmax(label_logits, dim=-1).detach() if label_logits is not None else None
    record = {"outcome": outcome, "stop": stop, "iterations": done, "evaluations": evaluations, "loss": final}
    return record, images, soft, history


def _make_optimizer(variables: list[torch.Tensor], config: MatchConfig):
    if config.optimizer == "lbfgs" and config.line_search == "none":
        return CompactLBFGS(variables, config.lr, config.lbfgs_history), None
    if config.optimizer == "lbfgs":
        line_search = None if config.line_search == "none" else config.line_search
        optimizer = torch.optim.LBFGS(
            variables, lr=config.lr, max_iter=config.lbfgs_inner,
            history_size=config.lbfgs_history, line_search_fn=line_search,
        )
        return optimizer, None
    optimizer = torch.optim.Adam(variables, lr=config.lr)
    scheduler = None
    if config.lr_schedule:
        milestones = sorted({max(1, int(config.iterations * f)) for f in (3 / 8, 5 / 8, 7 / 8)})
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    return optimizer, scheduler


def check_choice(field_name: str, value: object, choices: tuple[str, ...]) -> None:
    """Raise a one-line ValueError naming the field when ``value`` is not one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{field_name} must be one of {', '.join(choices)}; got {value!r}")
