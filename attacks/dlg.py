"""DLG — "Deep Leakage from Gradients", Zhu, Liu, Han 2019 (arXiv 1906.08935).

Algorithm: draw dummy data and dummy soft labels, then minimise the squared L2 distance between their gradient
and the observed one with L-BFGS (lr 1), updating data and labels jointly. The recovered label of each image is
the arg-max of its learned soft label.

Assumptions: softmax cross-entropy (the client's loss), the architecture and the global weights are known, the
batch size is known (granted metadata or config). Labels granted by the threat model replace the learned soft
labels (reported in diagnostics). Works for any differentiable model, including ``linreg`` ("DLG on linear
regression"). For K-step updates, K simulated SGD steps are matched when lr and K are granted.

Robustness beyond the paper (all overridable, ``stall_check=0`` and ``max_redraws=0`` give the plain loop):
fresh starts after divergence or a stall, early stop once the objective falls under ``tolerance`` × its scale.

Options beyond the paper: ``tv_weight`` adds a total-variation prior. The weight is relative to the L2 objective's
scale ``Σ |g|²`` (see ``matching.py``). Its default (None) follows what was measured per image kind
(``priors.image_prior``): none for grey images and images up to 32 px (as published; they reach ≥ 30 dB without
one), 1e-4 for colour images above 32 px — a departure from the paper: on colour faces at 64 px the gradient does
not determine the image (≈ 11 400 independent gradient equations for 12 288 pixels on this LeNet), a 12.6 dB image
matched every layer, and without a prior DLG and iDLG ended at 11–14 dB (``bench/README.md``). Every result states
the prior it used (diagnostics ``image_prior``, ``tv_weight``); ``tv_weight=0`` gives the published objective.
``max_step`` caps each L-BFGS step (one pixel range; None for DLG's uncapped steps, which threw pixels to ±1e6 and
beyond on those faces).
``snapshot_every`` (10, as in DLG's figure) keeps the images every N optimiser iterations for ``history.png``.
``conv_kernels`` fixes the CPU convolution kernels (``native``; ``auto`` picks by timing, an opt-in because the
result then depends on machine load).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from fedleak.attacks.base import Attack, register_attack
from fedleak.attacks.matching import MatchConfig, check_choice, match_gradients
from fedleak.attacks.matching_problem import matching_problem, random_init, to_reconstruction
from fedleak.attacks.priors import ImagePrior, image_prior
from fedleak.types import Observation, Reconstruction


@register_attack("dlg")
class DLG(Attack):
    """Joint L-BFGS matching of dummy data and soft labels."""

    @dataclass
    class Config:
        iterations: int = 300
        lr: float = 1.0
        restarts: int = 1
        max_redraws: int = 4
        #: Early stop at 2e-8 of Σ|target|²: ≥ 31.8 dB on the first 20 CIFAR-10 test images on DLG's LeNet
        #: (1e-8 stopped at 38–45 dB, 5e-8 and 1e-7 went under 30 dB on some images).
        tolerance: float = 2e-8
        stall_check: int = 50
        stall_ratio: float = 1e-3
        line_search: str = "none"
        #: L-BFGS curvature pairs kept: 300 took ~40 % fewer evaluations than torch's default 100 on those images.
        lbfgs_history: int = 300
        max_step: float | None = 1.0
        init: str = "gray"
        local_steps_mode: str = "auto"
        batch_size: int | None = None
        #: None: the measured default for the observed image kind (``priors.image_prior``: TV 1e-4 for colour
        #: images above 32 px, none otherwise); a number is used as given.
        tv_weight: float | None = None
        snapshot_every: int = 10
        conv_kernels: str = "native"

        def __post_init__(self) -> None:
            check_choice("init", self.init, ("normal", "uniform", "gray"))
            check_choice("local_steps_mode", self.local_steps_mode, ("auto", "pseudo_gradient", "simulate"))
            self.match_config()  # validates the loop settings now, not at the first observation

        def match_config(self) -> MatchConfig:
            return MatchConfig(
                distance="l2", optimizer="lbfgs", iterations=self.iterations, lr=self.lr, restarts=self.restarts,
                max_redraws=self.max_redraws, tolerance=self.tolerance, stall_check=self.stall_check,
                stall_ratio=self.stall_ratio, line_search=self.line_search, snapshot_every=self.snapshot_every,
                lbfgs_history=self.lbfgs_history, tv_weight=self.tv_weight or 0.0, conv_kernels=self.conv_kernels,
                max_step=self.max_step,
            )

        def image_prior(self, image_shape: tuple[int, ...]) -> ImagePrior:
            """The image prior for images of this C×H×W shape (the TV weight ``match_config`` leaves to the run)."""
            return image_prior(self.tv_weight, image_shape)

    def reconstruct(self, observation: Observation) -> Reconstruction:
        cfg = self.config
        problem = matching_problem(observation, self.device, cfg.local_steps_mode, cfg.batch_size)
        shape = (problem.batch_size, *problem.image_shape)
        generator = torch.Generator().manual_seed(self.seed)
        known = observation.labels
        prior = cfg.image_prior(problem.image_shape)
        result = match_gradients(
            problem.update_fn, problem.target, random_init(shape, cfg.init), known,
            replace(cfg.match_config(), tv_weight=prior.tv_weight), num_classes=problem.num_classes,
            generator=generator,
        )
        if known is not None:
            labels, method = known.reshape(-1).long(), "granted"
        else:
            labels = result.labels.argmax(dim=-1).cpu() if result.labels is not None else None
            method = "learned soft labels"
        return to_reconstruction(result, problem, labels, labels_method=method, labels_known=known is not None,
                                 tv_weight=prior.tv_weight, image_prior=prior.describe())
