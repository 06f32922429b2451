"""Image priors added to the gradient-matching objective.

Total variation as used by Inverting Gradients (Geiping et al. 2020, arXiv 2003.14053): the mean absolute
difference between neighbouring pixels, horizontally plus vertically (anisotropic TV). Using means rather than
sums keeps the weight independent of the image size.

The default prior of the L2 matching attacks depends on the image kind (channels, side), as measured: see
:func:`image_prior`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Anisotropic TV of a B×C×H×W batch: mean |x[h+1]-x[h]| + mean |x[w+1]-x[w]| (a scalar)."""
    if images.dim() != 4:
        raise ValueError(f"total_variation expects B×C×H×W images, got shape {tuple(images.shape)}")
    dh = (images[:, :, 1:, :] - images[:, :, :-1, :]).abs().mean()
    dw = (images[:, :, :, 1:] - images[:, :, :, :-1]).abs().mean()
    return dh + dw


#: The default TV weight of the L2 matching attacks (dlg, idlg, fedavg) per image kind, as measured with DLG's LeNet
#: (bench/README.md, "Default image prior"): without a prior, grey 28 px and colour 32 px images reach ≥ 30 dB
#: (MNIST 20/20, CIFAR-10 48/50, 32 px LFW faces 30/30), while colour faces at 64 px end at 11–14 dB, because the
#: gradient there has fewer independent equations than the image has pixels. The weight 1e-4 (relative to the L2
#: objective's scale) was chosen on the tuning faces ``lfw64-tuning``. Grey images above 32 px were not measured:
#: their gradient keeps more equations than pixels on that network, so they keep no prior.
TV_DEFAULT_COLOUR_ABOVE_32PX = 1e-4
LARGEST_SIDE_WITHOUT_PRIOR = 32


@dataclass(frozen=True)
class ImagePrior:
    """The prior one matching run used: its TV weight and where the weight came from (written into every row)."""

    tv_weight: float
    origin: str

    def describe(self) -> str:
        return f"tv_weight {self.tv_weight:g} ({self.origin})"


def default_tv_weight(channels: int, side: int) -> float:
    """The measured default TV weight for images of ``channels`` channels and side ``side`` (see above)."""
    return TV_DEFAULT_COLOUR_ABOVE_32PX if channels == 3 and side > LARGEST_SIDE_WITHOUT_PRIOR else 0.0


def image_prior(tv_weight: float | None, image_shape: tuple[int, ...], published: float | None = None) -> ImagePrior:
    """The prior a run uses: the weight the user set; else (``None``) the attack's ``published`` weight when it has
    one (Inverting Gradients' 1e-4 on its cosine objective), else the measured default for C×H×W images."""
    if tv_weight is not None:
        return ImagePrior(float(tv_weight), "set")
    if published is not None:
        return ImagePrior(published, "default, as published; not re-measured per image size")
    channels, side = image_shape[0], image_shape[-1]
    if channels != 3:
        kind = "grey images, any size, measured at 28 px"
    elif side > LARGEST_SIDE_WITHOUT_PRIOR:
        kind = f"colour images above {LARGEST_SIDE_WITHOUT_PRIOR} px, measured at 64 px"
    else:
        kind = f"colour images up to {LARGEST_SIDE_WITHOUT_PRIOR} px, measured at 32 px"
    return ImagePrior(default_tv_weight(channels, side), f"default for {kind}; bench/README.md")
