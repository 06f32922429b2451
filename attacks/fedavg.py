"""FedAvg leakage — "Data Leakage in Federated Averaging", Dimitrov, Balunović, Konstantinov, Vechev, TMLR 2022
(arXiv 2206.00866).

Algorithm, for a client that ran E epochs of minibatch SGD (batches of B) over its n images and sent its new
weights:

1. Labels: per-class counts of the n images from the last layer's bias in the pseudo-gradient
   ``g = (w_old − w_new)/(lr·S)`` (S = E·⌈n/B⌉ steps). Averaged over the S steps, ``g_j = p̄_j − N_j/n`` (each step
   contributes ``p̄_s,j − n_s,j/B`` and every image is seen once per epoch), so ``N_j = n (p̄_j − g_j)``. The paper
   estimates the mean softmax ``p̄`` per step by interpolating between the start and the end weights (its
   ``aaai_avg`` rule); so does this file, with the softmax on random images at ``w_old`` and at ``w_new`` (both
   known to the server), then the count rule of ``labels.py``.
2. Variables: a separate dummy copy of the n images per epoch (E × n). Epoch e's simulated minibatches are
   consecutive chunks of its copy, so no shuffle needs to be known: each copy is free to hold the images in the
   order the client drew them. Labels are tied to slots, though, and the client's shuffle decides which labels
   each step saw: ``label_orders`` candidate label sequences (the sorted one first, then seeded per-epoch
   permutations; all of them when there are that few) are each optimised for ``order_iterations`` iterations and
   the one with the lowest distance goes on. All E copies of an image start from the same draw.
3. Objective: the squared L2 distance between the simulated pseudo-gradient of the E·⌈n/B⌉ differentiable SGD
   steps and the observed one (``matching.py``'s loop and distance), plus the epoch-order-invariant prior that ties
   the copies together (every epoch holds the same images in another order):
   * ``prior="mean"`` — the paper's (``l2_mean`` in its code, weight 1000): the squared difference between the mean
     image of every pair of epochs, a statistic no permutation changes;
   * ``prior="matched"`` (the default) — stronger: every ``match_every`` evaluations each copy is matched to the
     first epoch's by optimal assignment (Hungarian, ``scipy.optimize.linear_sum_assignment``, same labels only),
     and each matched image is pulled to the mean of its E copies;
   * ``prior="none"`` — the copies are independent.
   Both priors are zero at the true images, so they steer without biasing the solution.
4. Reconstruction: every copy matched to the first epoch's (Hungarian on MSE, same labels only) and the n images
   averaged over the E matched copies.

Threat model: honest-but-curious server that knows the architecture, the global weights it sent, the client's
update, ``num_examples`` (n, which every FedAvg server sees) and, by grant (``local_hparams_known``,
``batch_size_known``), the client's lr, E and B. Without them this attack fails with the reason; the pseudo-gradient
baseline is iDLG's. Plain SGD without momentum, softmax cross-entropy with mean reduction (the client's loss).

Where this departs from the paper:
* optimiser: L-BFGS with fixed step, as fedleak's DLG/iDLG (the paper: Adam, lr 0.4, exponential decay, 400 steps,
  exponentially decaying layer weights, TV 1e-3 and a box prior), so the comparison with ``idlg`` isolates the
  per-epoch copies, the prior and the label rule;
* the default prior is the assignment-based one (``matched``); the paper's ``mean`` prior is an option;
* the paper tiles one label order over the epochs; here several candidate orders are probed (step 2). A partial
  last batch (n not a multiple of B) makes the count rule approximate; the count rule itself is the weak point on
  DLG's LeNet (see ``bench/README.md``);
* the prior weight is relative to ``Σ|g|²`` (the L2 objective of a zero update), so it does not depend on the
  model's gradient scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from fedleak.attacks.base import Attack, register_attack
from fedleak.attacks.labels import counts_to_labels, label_counts, last_linear_gradients, mean_softmax_estimate
from fedleak.attacks.matching import MatchConfig, UpdateFn, check_choice, match_gradients, reference_scale
from fedleak.attacks.matching_problem import random_init
from fedleak.attacks.priors import ImagePrior, image_prior
from fedleak.protocol import EPOCH_SIMULATION
from fedleak.training import functional_gradient
from fedleak.types import Observation, Reconstruction

PRIORS = ("matched", "mean", "none")
#: Cost added to an assignment pair whose labels differ: larger than any MSE between images in [0, 1].
LABEL_MISMATCH = 1e3


@dataclass(frozen=True)
class EpochPlan:
    """The client's round as the server reconstructs it: n images, E epochs, minibatches of B, step size lr."""

    n: int
    epochs: int
    batch_size: int
    lr: float

    @property
    def steps(self) -> int:
        return self.epochs * math.ceil(self.n / self.batch_size)

    @classmethod
    def of(cls, observation: Observation) -> EpochPlan:
        if observation.kind != "epochs":
            raise ValueError(f"the fedavg attack needs an epoch update (training.update: epochs), got "
                             f"{observation.kind!r}; use idlg or dlg for gradient and local_steps updates")
        meta = observation.metadata
        missing = meta.missing(EPOCH_SIMULATION)
        if missing:
            raise ValueError(f"the fedavg attack simulates the client's epochs and needs {', '.join(missing)} "
                             "(threat_model.local_hparams_known / batch_size_known); without them only the "
                             "pseudo-gradient can be matched (idlg with local_steps_mode=pseudo_gradient)")
        return cls(int(meta.num_examples), int(meta.local_epochs), int(meta.batch_size), float(meta.lr))


def epoch_copies_update_fn(model: nn.Module, weights: dict[str, torch.Tensor], plan: EpochPlan) -> UpdateFn:
    """The client's E epochs on E·n candidates: epoch e steps through copy e (rows e·n … e·n + n − 1) in
    consecutive minibatches of B; returned as the pseudo-gradient ``(w_0 − w_end)/(lr·steps)``."""
    start = {k: v.detach() for k, v in weights.items()}
    scale = 1.0 / (plan.lr * plan.steps)

    def update(images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        current = dict(start)
        for epoch in range(plan.epochs):
            for first in range(epoch * plan.n, (epoch + 1) * plan.n, plan.batch_size):
                batch = slice(first, min(first + plan.batch_size, (epoch + 1) * plan.n))
                grads = functional_gradient(model, current, images[batch], labels[batch], create_graph=True)
                current = {k: current[k] - plan.lr * grads[k] for k in current}
        return {k: (start[k] - current[k]) * scale for k in current}

    return update


def estimate_labels(observation: Observation, target: dict[str, torch.Tensor], plan: EpochPlan,
                    image_shape: tuple[int, ...]) -> tuple[torch.Tensor, dict[str, Any]]:
    """The n labels (sorted): granted ones, else counts from the bias pseudo-gradient with p̄ averaged over the
    steps, each step's softmax interpolated between the start and the end weights (the paper's interpolation, on
    the bias form of the count rule in ``labels.py``; the paper's code uses the weight-gradient form)."""
    if observation.labels is not None:
        return observation.labels.detach().reshape(-1).long().cpu().sort().values, {"labels_method": "granted"}
    num_classes = observation.model.num_classes
    _, bias = last_linear_gradients(target, num_classes)
    if bias is None:
        raise ValueError("the fedavg label rule needs a bias on the last layer (or labels_known: true)")
    model_start = observation.build_model()
    model_end = observation.model.build()
    model_end.load_state_dict({k: observation.update.get(k, v) for k, v in model_start.state_dict().items()})
    p_start = mean_softmax_estimate(model_start, image_shape)
    p_end = mean_softmax_estimate(model_end, image_shape)
    # Step s of S runs at weights ≈ w_old + (s/S)(w_new − w_old): the mean interpolation coefficient is (S−1)/(2S).
    c = (plan.steps - 1) / (2 * plan.steps)
    p_mean = (1 - c) * p_start + c * p_end
    counts = label_counts(bias.detach().cpu(), plan.n, p_mean)
    details = {"labels_method": "counts over the epoch (softmax interpolated start → end weights)"}
    return counts_to_labels(counts), details


def label_orders(labels: torch.Tensor, epochs: int, count: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Up to ``count`` distinct candidate orders of the n label instances, one permutation per epoch (E×n indices
    into ``labels``). The first keeps the sorted order in every epoch (the plain simulation's); the others are
    seeded random per-epoch permutations. The client's shuffles fix which label each simulated step sees, and a
    wrong label sequence cannot match, so several sequences are tried (all of them when there are few)."""
    n = len(labels)
    orders, seen = [torch.arange(n).repeat(epochs, 1)], set()
    seen.add(tuple(labels[orders[0]].reshape(-1).tolist()))
    for _ in range(50 * count):
        if len(orders) >= count:
            break
        order = torch.stack([torch.randperm(n, generator=generator) for _ in range(epochs)])
        key = tuple(labels[order].reshape(-1).tolist())
        if key not in seen:
            seen.add(key)
            orders.append(order)
    return orders


def assign_copies(images: torch.Tensor, labels: torch.Tensor, epochs: int) -> torch.Tensor:
    """E×n indices into the E·n slots: row e lists, for each slot i of epoch 0, the slot of epoch e holding the
    same image (optimal assignment on MSE, label-consistent)."""
    n = len(images) // epochs
    flat = images.detach().reshape(epochs, n, -1).double().cpu()
    slot = labels.reshape(epochs, n).cpu()
    rows = [torch.arange(n)]
    for epoch in range(1, epochs):
        cost = torch.cdist(flat[0], flat[epoch]).pow(2) / flat.shape[-1]
        cost = cost + LABEL_MISMATCH * (slot[0][:, None] != slot[epoch][None, :]).double()
        _, cols = linear_sum_assignment(cost.numpy())
        rows.append(torch.as_tensor(np.asarray(cols), dtype=torch.long) + epoch * n)
    return torch.stack(rows)


class EpochPrior:
    """The epoch-order-invariant prior, a function of the E·n candidates (``extra_penalty`` of the loop)."""

    def __init__(self, kind: str, weight: float, labels: torch.Tensor, epochs: int, match_every: int) -> None:
        self.kind, self.weight, self.labels, self.epochs = kind, weight, labels, epochs
        self.match_every, self.calls, self.assignment = match_every, 0, None
        self.rematches = 0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        copies = images.reshape(self.epochs, -1, *images.shape[1:])
        if self.kind == "mean":
            means = copies.mean(dim=1)
            pairs = (means[:, None] - means[None, :]).pow(2).flatten(2).mean(dim=-1)
            return self.weight * pairs.mean()
        # Matching is discrete: redone every ``match_every`` evaluations, held fixed in between.
        if self.assignment is None or self.calls % self.match_every == 0:
            self.assignment = assign_copies(images, self.labels, self.epochs).to(images.device)
            self.rematches += 1
        self.calls += 1
        matched = images[self.assignment]  # E×n×C×H×W
        return self.weight * (matched - matched.mean(dim=0, keepdim=True)).pow(2).mean()


def average_copies(images: torch.Tensor, assignment: torch.Tensor) -> torch.Tensor:
    """The n images: each first-epoch slot averaged with its matched copies of the other epochs."""
    return images[assignment].float().mean(dim=0)


@register_attack("fedavg")
class FedAvgLeakage(Attack):
    """Per-epoch dummy copies, simulated epochs, an epoch-order-invariant prior, the mean of the matched copies."""

    @dataclass
    class Config:
        iterations: int = 300
        lr: float = 1.0
        prior: str = "matched"
        #: Relative to Σ|g|² of the observed pseudo-gradient (the L2 objective of a zero update).
        prior_weight: float = 1e-3
        #: Objective evaluations between two re-assignments of the copies (``matched`` prior).
        match_every: int = 20
        #: Candidate label sequences tried (see :func:`label_orders`), each for ``order_iterations`` iterations;
        #: the one with the lowest distance is then run for ``iterations``.
        label_orders: int = 4
        order_iterations: int = 15
        restarts: int = 1
        max_redraws: int = 2
        tolerance: float = 2e-8
        lbfgs_history: int = 300
        init: str = "gray"
        #: None: the measured default for the image kind, as for ``dlg`` (``priors.image_prior``).
        tv_weight: float | None = None
        snapshot_every: int = 10
        conv_kernels: str = "native"

        def __post_init__(self) -> None:
            check_choice("prior", self.prior, PRIORS)
            check_choice("init", self.init, ("normal", "uniform", "gray"))
            if self.prior_weight < 0 or self.match_every < 1 or self.label_orders < 1 or self.order_iterations < 1:
                raise ValueError("prior_weight must be >= 0; match_every, label_orders, order_iterations >= 1")
            self.match_config()

        def match_config(self, iterations: int | None = None) -> MatchConfig:
            return MatchConfig(
                distance="l2", optimizer="lbfgs", iterations=iterations or self.iterations, lr=self.lr,
                restarts=self.restarts, max_redraws=self.max_redraws, tolerance=self.tolerance,
                snapshot_every=self.snapshot_every, lbfgs_history=self.lbfgs_history, tv_weight=self.tv_weight or 0.0,
                conv_kernels=self.conv_kernels,
            )

        def image_prior(self, image_shape: tuple[int, ...]) -> ImagePrior:
            """The TV prior for images of this C×H×W shape (``match_config`` leaves it to the run)."""
            return image_prior(self.tv_weight, image_shape)

    def reconstruct(self, observation: Observation) -> Reconstruction:
        cfg, plan = self.config, EpochPlan.of(observation)
        spec = observation.model
        shape = (spec.in_channels, spec.image_size, spec.image_size)
        model = observation.build_model().to(self.device)
        target = {k: v.to(self.device) for k, v in observation.gradient().items()}
        labels, notes = estimate_labels(observation, target, plan, shape)
        generator = torch.Generator().manual_seed(self.seed)
        # One start per image, shared by its E copies: the copies begin tied, as the prior wants them to end.
        base = random_init((plan.n, *shape), cfg.init)(generator)
        weights = {k: observation.global_weights[k].to(self.device) for k in target}
        update_fn = epoch_copies_update_fn(model, weights, plan)
        weight = cfg.prior_weight * reference_scale(target, "l2") if cfg.prior != "none" and plan.epochs > 1 else 0.0
        tv = cfg.image_prior(shape)

        def run(order: torch.Tensor, start: torch.Tensor, iterations: int):
            slots = labels[order].reshape(-1)
            prior = EpochPrior(cfg.prior, weight, slots, plan.epochs, cfg.match_every) if weight else None
            config = replace(cfg.match_config(iterations), tv_weight=tv.tv_weight)
            result = match_gradients(update_fn, target, start, slots, config, extra_penalty=prior, generator=generator)
            return result, slots, prior

        orders = label_orders(labels, plan.epochs, cfg.label_orders, generator)
        start, best, distances, probe_evaluations = base[orders[0]].reshape(-1, *shape), 0, [], 0
        if len(orders) > 1:
            probes = [run(o, base[o].reshape(-1, *shape), cfg.order_iterations)[0] for o in orders]
            distances = [p.distance for p in probes]
            probe_evaluations = sum(p.diagnostics()["evaluations"] for p in probes)
            best = int(np.argmin(distances))
            # The chosen order goes on from where its probe ended (its start if the probe failed).
            if probes[best].images is not None:
                start = probes[best].images
            else:
                start = base[orders[best]].reshape(-1, *shape)
        result, slots, prior = run(orders[best], start, cfg.iterations)
        notes |= {**result.diagnostics(), "update_mode": "simulate_epochs_per_epoch_copies", "prior": cfg.prior,
                  "prior_weight": cfg.prior_weight, "prior_rematches": getattr(prior, "rematches", 0),
                  "label_orders_tried": len(orders), "label_order_distances": distances, "label_order_chosen": best,
                  "label_order_evaluations": probe_evaluations,
                  "epochs": plan.epochs, "batch_size": plan.batch_size, "num_examples": plan.n,
                  "simulated_steps": plan.steps, "observed_steps": observation.metadata.local_steps,
                  "tv_weight": tv.tv_weight, "image_prior": tv.describe()}
        if result.status == "failed" or result.images is None:
            return Reconstruction(None, labels=labels, status="failed", reason=result.reason, diagnostics=notes)
        return _package(result, slots, plan, notes)


def _package(result, slots: torch.Tensor, plan: EpochPlan, diagnostics: dict[str, Any]) -> Reconstruction:
    """Match the copies, average them, and say how far the copies still disagree (0: one image per slot)."""
    images = result.images.detach().float().cpu().clamp(0, 1)
    assignment = assign_copies(images, slots, plan.epochs)
    mean = average_copies(images, assignment)
    spread = (images[assignment] - mean[None]).pow(2).mean(dim=(0, 2, 3, 4))
    diagnostics["copy_spread_mse"] = [float(s) for s in spread]
    history = [average_copies(h.float() / 255, assignment) for h in result.history]
    return Reconstruction(mean, labels=slots[assignment[0]].clone(), diagnostics=diagnostics, history=history)
