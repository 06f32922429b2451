"""Inverting Gradients — "Inverting Gradients — How easy is it to break privacy in federated learning?",
Geiping, Bauermeister, Dröge, Moeller 2020 (arXiv 2003.14053).

Algorithm: minimise the per-layer cosine distance between the candidate's gradient and the observed one plus a
total-variation prior, with Adam on signed gradients (lr 0.1, ×0.1 at 3/8, 5/8 and 7/8 of the iterations),
pixels projected onto [0, 1] after each step; several restarts, the best by matching loss is kept.

Assumptions: softmax cross-entropy (the client's loss), the architecture and the global weights are known.
Labels: granted ones, else inferred from the last layer (``labels.py``; exact at B = 1). Cosine matching only
needs the update's direction, so it also fits K-step updates without granted lr/K (pseudo-gradient); with lr
and K granted, K simulated SGD steps are matched. Defaults are sized for a CPU (the paper runs 24 000 iterations
with 8 restarts on a GPU); raise ``iterations`` and ``restarts`` for the paper's setting.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedleak.attacks.base import Attack, register_attack
from fedleak.attacks.idlg import match_with_inferred_labels
from fedleak.attacks.matching import MatchConfig, check_choice
from fedleak.types import Observation, Reconstruction


@register_attack("inverting_gradients")
class InvertingGradients(Attack):
    """Cosine + TV matching with signed Adam and restarts."""

    @dataclass
    class Config:
        iterations: int = 300
        lr: float = 0.1
        tv_weight: float = 1e-4
        restarts: int = 2
        max_redraws: int = 2
        signed_gradients: bool = True
        lr_schedule: bool = True
        init: str = "uniform"
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
                distance="cosine", optimizer="adam", iterations=self.iterations, lr=self.lr, tv_weight=self.tv_weight,
                restarts=self.restarts, max_redraws=self.max_redraws, signed_gradients=self.signed_gradients,
                lr_schedule=self.lr_schedule, parametrization="clamp", snapshot_every=self.snapshot_every,
            )

    def reconstruct(self, observation: Observation) -> Reconstruction:
        return match_with_inferred_labels(observation, self.config, self.device, self.seed)
