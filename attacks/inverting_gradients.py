"""Inverting Gradients — "Inverting Gradients — How easy is it to break privacy in federated learning?",
Geiping, Bauermeister, Dröge, Moeller 2020 (arXiv 2003.14053).

Algorithm, as published: minimise ``1 − cos(∇θ L(x, y), g)`` — one cosine similarity between the whole
concatenated gradient vector of the candidate and the observed one (eq. 4; ``distance="cosine"`` in
``matching.py``) — plus ``tv_weight`` × total variation, with Adam on signed gradients (lr 0.1, ×0.1 at 3/8, 5/8
and 7/8 of the iterations), pixels projected onto the image box after each step. Several restarts; the one with
the lowest gradient loss (without TV) is kept, as the reference code scores its trials.

Settings: ``setting="full"`` is the paper's (24 000 iterations, 8 restarts, meant for a GPU); ``setting="cpu"``
(the default) runs 1 000 iterations with 2 restarts. ``iterations`` and ``restarts`` override either setting.

Where this departs from the paper:
* images are optimised in [0, 1] pixel space and boxed there: fedleak's models take [0, 1] inputs, while the
  reference code works on mean/std-normalised images (so its TV weight acts on a ≈ 4× larger pixel scale);
* the start is uniform on [0, 1] (the paper draws from a standard normal in normalised space; a standard normal
  in pixel space would be clamped to 0 or 1 at every second pixel);
* a start whose objective diverges is redrawn (``max_redraws``), which the paper does not need on a GPU.

Assumptions: softmax cross-entropy (the client's loss), the architecture and the global weights are known.
Labels: granted ones, else inferred from the last layer (``labels.py``; exact at B = 1). Cosine matching only
needs the update's direction, so it also fits K-step updates without granted lr/K (pseudo-gradient); with lr
and K granted, K simulated SGD steps are matched.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedleak.attacks.base import Attack, register_attack
from fedleak.attacks.label_then_match import match_with_inferred_labels
from fedleak.attacks.matching import MatchConfig, check_choice
from fedleak.attacks.priors import ImagePrior, image_prior
from fedleak.types import Observation, Reconstruction

#: The reference code's TV weight.
PUBLISHED_TV = 1e-4
#: (iterations, restarts) of each named setting.
SETTINGS: dict[str, tuple[int, int]] = {"cpu": (1_000, 2), "full": (24_000, 8)}


@register_attack("inverting_gradients")
class InvertingGradients(Attack):
    """Whole-gradient cosine + TV matching with signed Adam and restarts."""

    @dataclass
    class Config:
        setting: str = "cpu"
        #: None: the setting's value.
        iterations: int | None = None
        restarts: int | None = None
        lr: float = 0.1
        #: None: the reference code's default TV weight, 1e-4 (on the cosine objective, whatever the image size).
        tv_weight: float | None = None
        max_redraws: int = 2
        signed_gradients: bool = True
        lr_schedule: bool = True
        init: str = "uniform"
        label_method: str = "auto"
        local_steps_mode: str = "auto"
        batch_size: int | None = None
        snapshot_every: int = 10
        conv_kernels: str = "native"

        def __post_init__(self) -> None:
            check_choice("setting", self.setting, tuple(SETTINGS))
            check_choice("init", self.init, ("normal", "uniform", "gray"))
            check_choice("local_steps_mode", self.local_steps_mode, ("auto", "pseudo_gradient", "simulate"))
            check_choice("label_method", self.label_method, ("auto", "idlg", "bias_sign", "counts"))
            self.match_config()  # validates the loop settings now, not at the first observation

        def match_config(self) -> MatchConfig:
            iterations, restarts = SETTINGS[self.setting]
            return MatchConfig(
                distance="cosine", optimizer="adam", lr=self.lr,
                tv_weight=PUBLISHED_TV if self.tv_weight is None else self.tv_weight,
                iterations=iterations if self.iterations is None else self.iterations,
                restarts=restarts if self.restarts is None else self.restarts, max_redraws=self.max_redraws,
                signed_gradients=self.signed_gradients, lr_schedule=self.lr_schedule, parametrization="clamp",
                snapshot_every=self.snapshot_every, conv_kernels=self.conv_kernels,
            )

        def image_prior(self, image_shape: tuple[int, ...]) -> ImagePrior:
            """The published weight unless one is set (stated in every result's diagnostics)."""
            return image_prior(self.tv_weight, image_shape, published=PUBLISHED_TV)

    def reconstruct(self, observation: Observation) -> Reconstruction:
        return match_with_inferred_labels(observation, self.config, self.device, self.seed)
