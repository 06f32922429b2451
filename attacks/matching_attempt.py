"""One attempt of the gradient-matching loop (``matching.py``): the variables, the objective, the optimiser, the stop
rules and the snapshots, plus the distances between updates.

Split from ``matching.py`` so each file reads on its own: ``match_config.py`` holds the settings, ``matching.py``
the restarts and redraws, this file what happens from one start. The rules are in ``matching.py``'s docstring.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from fedleak.attacks.lbfgs import CompactLBFGS
from fedleak.attacks.match_config import MatchConfig, UpdateFn
from fedleak.attacks.priors import total_variation


def update_distance(update: dict[str, torch.Tensor], target: dict[str, torch.Tensor], kind: str) -> torch.Tensor:
    """``l2``: squared L2 summed over layers. ``cosine``: 1 − cosine of the whole concatenated update vectors
    (Inverting Gradients). ``layer_cosine``: 1 − cosine per layer, summed over layers (the hybrid correction)."""
    total = torch.zeros((), device=next(iter(target.values())).device)
    if kind == "cosine":
        # Σ over layers of the dot products and squared norms is the dot product and norms of the concatenation.
        dot, uu, tt = total, total, total
        for name, t in target.items():
            u = update[name]
            dot, uu, tt = dot + (u * t).sum(), uu + u.pow(2).sum(), tt + t.pow(2).sum()
        return 1 - dot / (uu.sqrt() * tt.sqrt() + 1e-12)
    for name, t in target.items():
        u = update[name]
        if kind == "l2":
            total = total + (u - t).pow(2).sum()
        else:
            cos = (u * t).sum() / (u.norm() * t.norm() + 1e-12)
            total = total + (1 - cos)
    return total


def reference_scale(target: dict[str, torch.Tensor], distance: str) -> float:
    """The distance's natural scale: ``Σ |t|²`` for L2, 1 for cosine, the layer count for layer_cosine (never 0)."""
    if distance == "l2":
        return max(sum(float(t.detach().double().pow(2).sum()) for t in target.values()), 1e-30)
    return 1.0 if distance == "cosine" else float(len(target))


def _to_variable(start: torch.Tensor, parametrization: str) -> torch.Tensor:
    if parametrization == "sigmoid":
        start = torch.logit(start.clamp(1e-4, 1 - 1e-4))
    elif parametrization == "clamp":
        start = start.clamp(0, 1)
    return start.contiguous().requires_grad_(True)


def _images(variable: torch.Tensor, parametrization: str) -> torch.Tensor:
    return torch.sigmoid(variable) if parametrization == "sigmoid" else variable


class Snapshots:
    """uint8 copies of the images every ``every`` iterations; past ``limit`` every other one is dropped and the
    interval doubled (the kept ones stay on the doubled grid), so memory is bounded however long the run."""

    def __init__(self, every: int, limit: int) -> None:
        self.every, self.limit = every, limit
        self.images: list[torch.Tensor] = []
        self.iterations: list[int] = []
        #: The matching distance D at each snapshot (nan before the first evaluation): the loss curve.
        self.losses: list[float] = []

    def take(self, iteration: int, images: Callable[[], torch.Tensor], final: bool = False,
             loss: float = math.nan) -> None:
        if not self.every or (not final and iteration % self.every):
            return
        if self.iterations and self.iterations[-1] == iteration:
            return
        self.images.append(images().detach().clamp(0, 1).mul(255).round().to(torch.uint8).cpu())
        self.iterations.append(iteration)
        self.losses.append(loss)
        if len(self.images) > self.limit:
            self.images, self.iterations, self.every = self.images[::2], self.iterations[::2], 2 * self.every
            self.losses = self.losses[::2]


class Attempt:
    """One attempt from one start: the variables, the objective, the optimiser and the stop rules."""

    def __init__(self, update_fn: UpdateFn, target: dict[str, torch.Tensor], start: torch.Tensor,
                 fixed_labels: torch.Tensor | None, label_logits: torch.Tensor | None, config: MatchConfig,
                 extra_penalty: Callable[[torch.Tensor], torch.Tensor] | None) -> None:
        self.update_fn, self.target, self.config, self.extra_penalty = update_fn, target, config, extra_penalty
        self.fixed_labels = fixed_labels
        self.variable = _to_variable(start, config.parametrization)
        self.start_images = self.images().clone()
        self.variables = [self.variable]
        self.label_logits = None
        if label_logits is not None:
            self.label_logits = label_logits.contiguous().requires_grad_(True)
            self.variables.append(self.label_logits)
        self.evaluations, self.last, self.last_distance, self.done, self.steps = 0, math.inf, math.inf, 0, 0
        self.reference = reference_scale(target, config.distance)
        self.tv_scale = config.tv_weight * (self.reference if config.distance == "l2" else 1.0)
        self.snapshots = Snapshots(config.snapshot_every, config.snapshot_limit)
        self.record: dict[str, Any] = {}
        self.optimizer: Any = None

    def images(self) -> torch.Tensor:
        return _images(self.variable, self.config.parametrization).detach()

    def moved(self) -> float:
        """Largest change of any pixel from the start (inf when the pixels are no longer finite)."""
        change = (self.images() - self.start_images).abs()
        return float(change.max()) if bool(torch.isfinite(change).all()) else math.inf

    def soft_labels(self) -> torch.Tensor | None:
        return None if self.label_logits is None else torch.softmax(self.label_logits, dim=-1).detach()

    def objective(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(whole objective, distance D alone)."""
        images = _images(self.variable, self.config.parametrization)
        labels = self.fixed_labels if self.label_logits is None else torch.softmax(self.label_logits, dim=-1)
        distance = update_distance(self.update_fn(images, labels), self.target, self.config.distance)
        value = distance
        if self.tv_scale:
            value = value + self.tv_scale * total_variation(images)
        if self.extra_penalty is not None:
            value = value + self.extra_penalty(images)
        return value, distance

    def closure(self) -> torch.Tensor:
        self.evaluations += 1
        value, distance = self.objective()
        grads = torch.autograd.grad(value, self.variables)
        for var, grad in zip(self.variables, grads, strict=True):
            var.grad = grad.sign() if self.config.signed_gradients else grad
        self.last, self.last_distance = float(value.detach()), float(distance.detach())
        return value.detach()

    def checks(self) -> tuple[str, str] | None:
        if not math.isfinite(self.last) or not torch.isfinite(self.variable).all():
            return f"non-finite objective or pixels at iteration {self.done}", "diverged"
        if self.config.tolerance and self.last_distance <= self.config.tolerance * self.reference:
            return f"converged at iteration {self.done} (evaluation {self.evaluations})", "ok"
        return None

    def stuck(self) -> bool:
        """Above the stall bar (only when the stall rule is on): a fresh draw may do better."""
        return bool(self.config.stall_check) and self.last_distance > self.config.stall_ratio * self.reference

    def run(self) -> dict[str, Any]:
        stop, outcome = self._iterate()
        final, distance = math.inf, math.inf
        if outcome != "diverged":
            # The optimiser's last step moved the variables after its last evaluation: score where they are now.
            with torch.enable_grad():
                value, dist = self.objective()
            final, distance = float(value.detach()), float(dist.detach())
            if not math.isfinite(final):
                stop, outcome = f"non-finite objective after iteration {self.done}", "diverged"
            else:
                self.snapshots.take(self.steps, self.images, final=True, loss=distance)
        self.record = {"outcome": outcome, "stop": stop, "iterations": self.done, "evaluations": self.evaluations,
                       "moved": self.moved(),
                       "loss": distance, "objective": final,
                       "capped_steps": getattr(self.optimizer, "capped", 0),
                       "lbfgs_resets": getattr(self.optimizer, "resets", 0)}
        return self.record

    def _iterate(self) -> tuple[str, str]:
        config = self.config
        optimizer, scheduler = make_optimizer(self.variables, config)
        self.optimizer = optimizer
        # Fixed-step L-BFGS runs one evaluation per torch step: its state (history, direction) persists between
        # steps, so ``lbfgs_inner`` one-evaluation steps follow exactly the path of one ``max_iter=lbfgs_inner``
        # step, but the stop and divergence checks see every evaluation instead of every ``lbfgs_inner``-th.
        per_evaluation = config.optimizer == "lbfgs" and config.line_search == "none"
        sub_steps = config.lbfgs_inner if per_evaluation else 1
        best_seen, best_at = math.inf, 0
        self.snapshots.take(0, self.images)
        for it in range(config.iterations):
            self.done = it + 1
            ended = self._sub_steps(optimizer, scheduler, sub_steps)
            if ended is not None:
                return ended
            if config.stall_check and self.done == config.stall_check and self.stuck():
                share = self.last_distance / self.reference
                return f"stalled at iteration {self.done} (distance {share:.2g} of scale)", "stalled"
            if self.last < best_seen * (1 - config.min_improvement):
                best_seen, best_at = self.last, self.done
            elif config.patience and self.done - best_at >= config.patience:
                return f"plateau at iteration {self.done}", "ok"
        return "max_iterations", "ok"

    def _sub_steps(self, optimizer, scheduler, count: int) -> tuple[str, str] | None:
        for _ in range(count):
            before = [v.detach().clone() for v in self.variables]
            optimizer.step(self.closure)
            if scheduler is not None:
                scheduler.step()
            if self.config.parametrization == "clamp":
                with torch.no_grad():
                    self.variable.clamp_(0, 1)
            self.steps += 1
            ended = self.checks()
            if ended is None or ended[1] != "diverged":
                self.snapshots.take(self.steps, self.images, loss=self.last_distance)
            if ended is None and all(torch.equal(b, v) for b, v in zip(before, self.variables, strict=True)):
                # L-BFGS returns without moving once its gradient or its step is negligible: nothing more to gain.
                outcome = "stalled" if self.stuck() else "ok"
                ended = f"optimizer made no progress at iteration {self.done}", outcome
            if ended is not None:
                return ended
        return None



def make_optimizer(variables: list[torch.Tensor], config: MatchConfig):
    if config.optimizer == "lbfgs" and config.line_search == "none":
        return CompactLBFGS(variables, config.lr, config.lbfgs_history, config.max_step), None
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
