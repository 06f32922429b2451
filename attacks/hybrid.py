"""Hybrid attack of "Analysing Training-Data Leakage from Gradients through Linear Systems and Gradient Matching"
(Chen & Campbell, BMVC 2022, arXiv 2210.13231).

Algorithm (one sample): walk the network backwards as R-GAP does; at each conv layer solve the stacked linear system
``U x = V`` (forward + gradient constraints) by least squares, then *correct* that solution by gradient matching on
the sub-network from this layer up, keeping the linear system as a soft penalty:

    x_i = argmin_x  alpha * sum_{layers >= i} (1 - cos(grad(F_{>=i}(x), y), observed grad))
                    + beta * TV(x) + gamma * (relative residual of U x = V)^2

started at the least-squares solution, then pass ``x_i`` down as the next layer's output.

Assumptions: batch size 1, invertible activations (ReLU layers use their live units' forward rows only), known
weights, a gradient. Unlike the reference code, the label comes from label inference on the observed gradient (or the
threat model's grant) and every target gradient is the observed one — never recomputed from true intermediate inputs.
Iterations are sized for a CPU by default (the paper: 10 000 / 8 000 / 1 000 Adam steps); the residual penalty is
normalised by the size of each block so ``gamma`` does not depend on the scale of the weights.
The gradient-matching loop is the shared :func:`fedleak.attacks.matching.match_gradients`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fedleak.attacks.base import Attack, register_attack
from fedleak.attacks.conv_network import ConvLayer, parse_network
from fedleak.attacks.conv_systems import LayerSystem, copa_index, invert_network, numpy_params
from fedleak.attacks.labels import infer_labels
from fedleak.attacks.matching import MatchConfig, match_gradients, update_distance
from fedleak.attacks.priors import total_variation
from fedleak.attacks.rconv import analytic_result
from fedleak.training import loss_of
from fedleak.types import Observation, Reconstruction


class _TailUpdate:
    """Gradients of the layers at and above a conv layer, as a function of that layer's input.

    A forward pre-hook swaps the candidate in as the layer's input, so the model's own forward (whatever its module
    layout) computes the sub-network ``F_{>=i}``; only parameters of the tail get gradients.
    """

    def __init__(self, model: nn.Module, layer: nn.Module, names: list[str], input_shape: tuple[int, ...]):
        params = dict(model.named_parameters())
        self.model, self.layer, self.names = model, layer, names
        self.params = [params[n] for n in names]
        self.loss = loss_of(model)
        self.dummy = torch.zeros((1, *input_shape), dtype=self.params[0].dtype)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        handle = self.layer.register_forward_pre_hook(lambda module, args: (images,))
        try:
            logits = self.model(self.dummy.expand(images.shape[0], *self.dummy.shape[1:]))
        finally:
            handle.remove()
        grads = torch.autograd.grad(self.loss(logits, labels), self.params, create_graph=True)
        return dict(zip(self.names, grads, strict=True))


@register_attack("hybrid")
class Hybrid(Attack):
    @dataclass
    class Config:
        """Hybrid settings. ``(alpha, beta, gamma, iterations)`` per depth: the image layer, the layer above it, deeper.

        Attributes:
            image_weights / second_weights / deeper_weights: (alpha, beta, gamma) as in the paper.
            image_iterations / second_iterations / deeper_iterations: Adam steps per correction (CPU-sized).
            lr: Adam step size.
            correct_unique_layers: also correct layers whose linear system is uniquely solvable and consistent
                (relative residual below ``consistent_residual``); normally skipped, there is nothing to correct.
            rcond / nullspace_limit / dead_tol: linear-system settings, as for ``rgap``.
            label_method: label inference rule (see ``fedleak.attacks.labels.infer_labels``).
        """

        image_weights: tuple[float, float, float] = (1.0, 1.0, 0.05)
        second_weights: tuple[float, float, float] = (1.0, 1.0, 0.1)
        deeper_weights: tuple[float, float, float] = (10.0, 0.1, 1.0)
        image_iterations: int = 400
        second_iterations: int = 300
        deeper_iterations: int = 200
        lr: float = 0.01
        correct_unique_layers: bool = False
        consistent_residual: float = 1e-4
        rcond: float = 1e-10
        nullspace_limit: int = 1500
        dead_tol: float = 1e-5
        label_method: str = "auto"

        def __post_init__(self) -> None:
            for name in ("image_iterations", "second_iterations", "deeper_iterations"):
                if getattr(self, name) < 0:
                    raise ValueError(f"{name} must be >= 0")
            if self.lr <= 0:
                raise ValueError("lr must be positive")

    @staticmethod
    def policy(layer: ConvLayer, is_first: bool) -> tuple[bool, bool]:
        return True, True

    def reconstruct(self, observation: Observation) -> Reconstruction:
        spec = observation.model
        shape = (spec.in_channels, spec.image_size, spec.image_size)
        model = observation.build_model()
        net = parse_network(model, shape)
        gradients = observation.gradient()
        batch = observation.batch_size or 1
        inferred = infer_labels(
            gradients, spec.num_classes, batch, method=self.config.label_method, known=observation.labels,
            model=model, image_shape=shape,
        )
        labels = inferred.labels.reshape(-1)[:1]
        corrections: list[dict] = []
        refine = self._refiner(model, net, gradients, labels, shape, corrections)
        walk = invert_network(
            net,
            numpy_params(model.state_dict()),
            numpy_params(gradients),
            self.policy,
            rcond=self.config.rcond,
            dead_tol=self.config.dead_tol,
            nullspace_limit=self.config.nullspace_limit,
            refine=refine,
        )
        result = analytic_result(observation, walk, net)
        result.labels = inferred.labels.reshape(-1)
        result.diagnostics["label_rule"] = inferred.method
        result.diagnostics["corrections"] = corrections
        result.diagnostics["copa_index"] = copa_index([r.deficiency for r in walk.reports])
        return result

    def _refiner(self, model, net, gradients, labels, shape, log):
        names_in_order = [n for n, _ in model.named_parameters()]
        cfg = self.config

        def refine(index: int, layer: ConvLayer, x0: np.ndarray, system: LayerSystem) -> np.ndarray:
            # A unique, consistent solution has nothing to correct. A unique but inconsistent one (its output was
            # itself a correction, hence inexact) is corrected like a deficient one.
            consistent = system.report.residual < cfg.consistent_residual
            if system.report.deficiency == 0 and consistent and not cfg.correct_unique_layers:
                log.append({"layer": layer.name, "skipped": "unique, consistent least-squares solution"})
                return x0
            alpha, beta, gamma = cfg.image_weights if index == 0 else (
                cfg.second_weights if index == 1 else cfg.deeper_weights
            )
            iterations = cfg.image_iterations if index == 0 else (
                cfg.second_iterations if index == 1 else cfg.deeper_iterations
            )
            if iterations == 0:
                return x0
            first = names_in_order.index(f"{layer.name}.weight")
            tail = names_in_order[first:]
            update = _TailUpdate(model, layer.module, tail, shape)
            target = {n: gradients[n].detach().float() for n in tail}
            penalty = _system_penalty(layer, system, gamma / alpha)
            start = torch.from_numpy(x0).float().unsqueeze(0)
            config = MatchConfig(
                distance="layer_cosine", optimizer="adam", iterations=iterations, lr=cfg.lr, tv_weight=beta / alpha,
                parametrization="clamp" if index == 0 else "none", restarts=1, max_redraws=0,
            )
            generator = torch.Generator().manual_seed(self.seed + index)
            result = match_gradients(
                update, target, start, labels, config, extra_penalty=penalty, generator=generator
            )
            before = _objective(update, target, start, labels, penalty, beta / alpha)
            entry = {"layer": layer.name, "iterations": iterations, "objective_before": before,
                     "image_prior": f"tv_weight {beta / alpha:g} (the hybrid paper's β/α for this layer)"}
            if result.images is None or not result.loss < before:
                entry["kept"] = "least-squares solution (the correction did not lower the objective)"
                log.append(entry)
                return x0
            entry["objective_after"] = result.loss
            log.append(entry)
            return result.images[0].detach().double().numpy()

        return refine


def _system_penalty(layer: ConvLayer, system: LayerSystem, weight: float):
    """``weight`` × squared relative residual of the layer's forward and gradient constraints, in torch."""
    geom = layer.geometry
    w = torch.from_numpy(system.weight).float()
    delta = torch.from_numpy(system.delta).float().unsqueeze(0)
    g_obs = torch.from_numpy(system.weight_grad).float()
    g_norm = g_obs.norm().clamp_min(1e-30)
    z = None if system.z is None else torch.from_numpy(system.z).float()
    known = None if z is None else torch.isfinite(z)

    def penalty(x: torch.Tensor) -> torch.Tensor:
        g = torch.nn.grad.conv2d_weight(x, w.shape, delta, stride=geom.stride, padding=geom.padding)
        total = ((g - g_obs).norm() / g_norm) ** 2
        if z is not None:
            out = F.conv2d(x, w, stride=geom.stride, padding=geom.padding)[0]
            diff = (out - torch.nan_to_num(z))[known]
            total = total + (diff.norm() / z[known].norm().clamp_min(1e-30)) ** 2
        return weight * total

    return penalty


def _objective(update, target, images, labels, penalty, tv_weight: float) -> float:
    """The correction's objective at ``images`` (to keep the least-squares start when matching made it worse)."""
    with torch.enable_grad():
        value = update_distance(update(images, labels), target, "layer_cosine")
        value = value + tv_weight * total_variation(images) + penalty(images)
    return float(value.detach())
