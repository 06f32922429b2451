"""iDLG — "iDLG: Improved Deep Leakage from Gradients", Zhao, Mopuri, Bilen 2020 (arXiv 2001.02610).

Algorithm: infer the label analytically from the last layer's gradient (see ``labels.py``), then match the
observed gradient with dummy data only (L-BFGS, squared L2 distance, as DLG) under that fixed label.

Assumptions: softmax cross-entropy (the client's loss), the architecture and the global weights are known, a
last fully connected layer; the label rule is exact for one image (B = 1) and an estimate for B > 1 (label
counts). Labels granted by the threat model are used as they are. For K-step updates, K simulated SGD steps
are matched when lr and K are granted (``local_steps_mode``).

Robustness beyond the paper (all overridable): a fresh start is drawn when an attempt diverges (non-finite
objective or pixels) or stalls (objective still above ``stall_ratio`` × its scale after ``stall_check``
iterations), and the loop stops once the objective falls under ``tolerance`` × its scale (see ``matching.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedleak.attacks.base import Attack, register_attack
from fedleak.attacks.labels import infer_labels
from fedleak.attacks.matching import (
    MatchConfig,
    check_choice,
    match_gradients,
    matching_problem,
    random_init,
    to_reconstruction,
)
from fedleak.types import Observation, Reconstruction


@register_attack("idlg")
class IDLG(Attack):
    """Analytic label, then L-BFGS gradient matching on the data."""

    @dataclass
    class Config:
        iterations: int = 300
        lr: float = 1.0
        restarts: int = 1
        max_redraws: int = 4
        tolerance: float = 1e-8
        stall_check: int = 50
        stall_ratio: float = 1e-3
        line_search: str = "none"
        init: str = "gray"
        label_method: str = "auto"
        local_steps_mode: str = "auto"
        batch_size: int | None = None
        snapshot_every: int = 0

        def __post_init__(self) -> None:
            check_choice("init", self.init, ("normal", "uniform", "gray"))
            check_choice("local_steps_mode", self.local_steps_mode, ("auto", "pseudo_gradient", "simulate"))
            check_choice("label_method", self.label_method, ("auto", "idlg", "bias_sign", "counts"))
            self.match_config()  # validates the loop settings now, not at the first observation


        def match_config(self) -> MatchConfig:
            return MatchConfig(
                distance="l2", optimizer="lbfgs", iterations=self.iterations, lr=self.lr, restarts=self.restarts,
                max_redraws=self.max_redraws, tolerance=self.tolerance, stall_check=self.stall_check,
                stall_ratio=self.stall_ratio, line_search=self.line_search, snapshot_every=self.snapshot_every,
            )

    def reconstruct(self, observation: Observation) -> Reconstruction:
        cfg = self.config
        problem = matching_problem(observation, self.device, cfg.local_steps_mode, cfg.batch_size)
        inferred = infer_labels(
            problem.target, problem.num_classes, problem.batch_size, method=cfg.label_method,
            known=observation.labels, model=problem.model, image_shape=problem.image_shape,
        )
        shape = (problem.batch_size, *problem.image_shape)
        generator = torch.Generator().manual_seed(self.seed)
        result = match_gradients(
            problem.update_fn, problem.target, random_init(shape, cfg.init), inferred.labels, cfg.match_config(),
            generator=generator,
        )
        return to_reconstruction(result, problem, inferred.labels, **inferred.diagnostics())
