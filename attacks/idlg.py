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

Options beyond the paper, as in ``dlg.py``: ``tv_weight`` (0 by default, as published; relative to the L2 scale),
``max_step`` (1), ``snapshot_every`` (10) and ``conv_kernels`` (``native``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedleak.attacks.base import Attack, register_attack
from fedleak.attacks.dlg import DLG
from fedleak.attacks.labels import infer_labels
from fedleak.attacks.matching import check_choice, match_gradients
from fedleak.attacks.matching_problem import matching_problem, random_init, to_reconstruction
from fedleak.types import Observation, Reconstruction


@register_attack("idlg")
class IDLG(Attack):
    """Analytic label, then L-BFGS gradient matching on the data."""

    @dataclass
    class Config(DLG.Config):
        """DLG's loop settings plus the label rule (auto: iDLG row sums at B = 1, label counts for B > 1)."""

        label_method: str = "auto"

        def __post_init__(self) -> None:
            check_choice("label_method", self.label_method, ("auto", "idlg", "bias_sign", "counts"))
            super().__post_init__()

    def reconstruct(self, observation: Observation) -> Reconstruction:
        return match_with_inferred_labels(observation, self.config, self.device, self.seed)


def match_with_inferred_labels(observation: Observation, cfg, device: torch.device, seed: int) -> Reconstruction:
    """Infer the labels from the last layer's gradient, then match data only under them.

    iDLG's recipe, shared with Inverting Gradients. ``cfg`` provides ``local_steps_mode``, ``batch_size``,
    ``label_method``, ``init``, ``tv_weight`` and ``match_config()``.
    """
    problem = matching_problem(observation, device, cfg.local_steps_mode, cfg.batch_size)
    inferred = infer_labels(
        problem.target, problem.num_classes, problem.batch_size, method=cfg.label_method,
        known=observation.labels, model=problem.model, image_shape=problem.image_shape,
    )
    shape = (problem.batch_size, *problem.image_shape)
    generator = torch.Generator().manual_seed(seed)
    result = match_gradients(
        problem.update_fn, problem.target, random_init(shape, cfg.init), inferred.labels, cfg.match_config(),
        generator=generator,
    )
    return to_reconstruction(result, problem, inferred.labels, tv_weight=cfg.tv_weight, **inferred.diagnostics())
