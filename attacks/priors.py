"""Image priors added to the gradient-matching objective.

Total variation as used by Inverting Gradients (Geiping et al. 2020, arXiv 2003.14053): the mean absolute
difference between neighbouring pixels, horizontally plus vertically (anisotropic TV). Using means rather than
sums keeps the weight independent of the image size.
"""

from __future__ import annotations

import torch


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Anisotropic TV of a B×C×H×W batch: mean |x[h+1]-x[h]| + mean |x[w+1]-x[w]| (a scalar)."""
    if images.dim() != 4:
        raise ValueError(f"total_variation expects B×C×H×W images, got shape {tuple(images.shape)}")
    dh = (images[:, :, 1:, :] - images[:, :, :-1, :]).abs().mean()
    dw = (images[:, :, :, 1:] - images[:, :, :, :-1]).abs().mean()
    return dh + dw
