"""The settings of the gradient-matching loop and the shapes of its callables, shared by ``matching.py`` (the
restarts and redraws) and ``matching_attempt.py`` (one attempt); the rules are documented in ``matching.py``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from fedleak.attacks.cpu_kernels import CHOICES as KERNEL_CHOICES

#: Maps (images, labels) to an update keyed by parameter name, differentiably w.r.t. the images.
UpdateFn = Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]
#: Draws a starting point from a generator (on the CPU; the loop moves it to the target's device).
InitFn = Callable[[torch.Generator], torch.Tensor]
DISTANCES = ("l2", "cosine", "layer_cosine")


@dataclass
class MatchConfig:
    """Settings of the matching loop. Defaults are DLG's (L2, L-BFGS), sized for a CPU."""

    distance: Literal["l2", "cosine", "layer_cosine"] = "l2"
    optimizer: Literal["lbfgs", "adam"] = "lbfgs"
    iterations: int = 300
    lr: float = 1.0
    #: L-BFGS: inner iterations per outer iteration (torch's ``max_iter``) and curvature history length.
    lbfgs_inner: int = 20
    lbfgs_history: int = 100
    #: Fixed-step L-BFGS: no variable moves by more than this in one step (None: no cap). One pixel range: without
    #: a cap, DLG's lr-1 steps threw pixels to ±1e6…1e9 on 64 px colour faces, where the sigmoids saturate and the
    #: gradient vanishes ("optimizer made no progress" far from a match).
    max_step: float | None = 1.0
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
    #: Keep a copy of the images every N optimiser iterations (0: never), at most ``snapshot_limit`` (see above).
    snapshot_every: int = 10
    snapshot_limit: int = 64
    #: With a tensor start, later attempts start from it plus Gaussian noise of this many standard deviations.
    redraw_noise: float = 0.5
    #: Torch CPU threads during the loop (restored afterwards); None keeps the process setting. One thread is the
    #: default because one evaluation of a small model is too little work to share (measured in bench/README.md).
    #: Ignored on GPU.
    cpu_threads: int | None = 1
    #: CPU convolution kernels. ``native`` (the default, faster on DLG's LeNet: bench/README.md); ``auto`` times one
    #: evaluation with each and keeps the faster (oneDNN wins on ResNet-18), an opt-in because the choice then
    #: depends on machine load and the two kernels round differently; see ``cpu_kernels.py``.
    conv_kernels: Literal["auto", "onednn", "native"] = "native"

    def __post_init__(self) -> None:
        check_choice("distance", self.distance, DISTANCES)
        if self.optimizer not in ("lbfgs", "adam"):
            raise ValueError(f"optimizer must be 'lbfgs' or 'adam', got {self.optimizer!r}")
        if self.parametrization not in ("none", "clamp", "sigmoid"):
            raise ValueError(f"parametrization must be 'none', 'clamp' or 'sigmoid', got {self.parametrization!r}")
        check_choice("conv_kernels", self.conv_kernels, KERNEL_CHOICES)
        if self.line_search not in ("none", "strong_wolfe"):
            raise ValueError(f"line_search must be 'none' or 'strong_wolfe', got {self.line_search!r}")
        if self.iterations < 1 or self.restarts < 1 or self.max_redraws < 0:
            raise ValueError("iterations and restarts must be >= 1 and max_redraws >= 0")
        if self.snapshot_every < 0 or self.snapshot_limit < 2 or self.tv_weight < 0:
            raise ValueError("snapshot_every and tv_weight must be >= 0 and snapshot_limit >= 2")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


def check_choice(field_name: str, value: object, choices: tuple[str, ...]) -> None:
    """Raise a one-line ValueError naming the field when ``value`` is not one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{field_name} must be one of {', '.join(choices)}; got {value!r}")
