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

Options beyond the paper, as in ``dlg.py``: ``tv_weight`` (relative to the L2 scale; by default none up to 32 px
and for grey images, as published, and 1e-4 for colour images above 32 px, as measured — a departure from the
paper), ``max_step`` (1), ``snapshot_every`` (10) and ``conv_kernels`` (``native``).
"""

from __future__ import annotations

from dataclasses import dataclass

from fedleak.attacks.base import Attack, register_attack
from fedleak.attacks.dlg import DLG
from fedleak.attacks.label_then_match import match_with_inferred_labels
from fedleak.attacks.matching import check_choice
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
