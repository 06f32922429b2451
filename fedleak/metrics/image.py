"""Per-image reconstruction metrics on batches of images in [0, 1]: MSE, PSNR (peak 1) and SSIM.

Every function takes two tensors of shape B×C×H×W (or C×H×W for one image) and returns a float64 tensor of
length B, one value per image pair ``(x[i], y[i])``. Nothing is matched or reordered here; see
:mod:`fedleak.metrics.matching` for batches whose order is unknown.
"""

import torch
from skimage.metrics import structural_similarity

#: PSNR peak: images live in [0, 1]. Reference code that uses 255 on [0, 1] images reports 48.13 dB too much.
PEAK = 1.0

#: The one SSIM setting of this project: Wang et al. 2004 ("Image quality assessment: from error visibility to
#: structural similarity", IEEE TIP), as scikit-image documents it — an 11-tap Gaussian window with σ = 1.5,
#: population (not sample) covariance, K1 = 0.01, K2 = 0.03, data range 1. Colour images: the mean of the
#: per-channel SSIMs. The Gaussian window is 11 px wide, so images under 11×11 are refused.
SSIM_SETTINGS: dict[str, object] = {
    "gaussian_weights": True,
    "sigma": 1.5,
    "use_sample_covariance": False,
    "data_range": 1.0,
}
SSIM_MIN_SIZE = 11

#: Whether a larger value means a better reconstruction (for tables and plots).
HIGHER_IS_BETTER = {"mse": False, "psnr": True, "ssim": True}


def _as_batches(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both as float64 B×C×H×W on the CPU, after checking the shapes agree."""
    if x.shape != y.shape:
        raise ValueError(f"image shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.dim() == 3:
        x, y = x.unsqueeze(0), y.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"expected images as B×C×H×W or C×H×W, got shape {tuple(x.shape)}")
    return x.detach().to("cpu", torch.float64), y.detach().to("cpu", torch.float64)


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image, averaged over channels and pixels.

    Example:
        >>> mse(torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 0.5))
        tensor([0.2500], dtype=torch.float64)
    """
    x, y = _as_batches(x, y)
    return ((x - y) ** 2).flatten(1).mean(dim=1)


def psnr_from_mse(mse_values: torch.Tensor) -> torch.Tensor:
    """``10·log10(PEAK² / MSE)`` with peak 1. An MSE of 0 gives ``inf`` (kept, not capped: it is exact).

    Example:
        >>> psnr_from_mse(torch.tensor([1e-4], dtype=torch.float64))
        tensor([40.], dtype=torch.float64)
    """
    mse_values = torch.as_tensor(mse_values, dtype=torch.float64)
    return 10.0 * torch.log10(PEAK**2 / mse_values)


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, peak 1 (images in [0, 1]); identical images give ``inf``."""
    return psnr_from_mse(mse(x, y))


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Structural similarity per image with :data:`SSIM_SETTINGS` (scikit-image's Wang et al. 2004 setting).

    Raises:
        ValueError: when the images are smaller than the 11×11 Gaussian window.
    """
    x, y = _as_batches(x, y)
    height, width = x.shape[-2:]
    if min(height, width) < SSIM_MIN_SIZE:
        raise ValueError(
            f"ssim needs images of at least {SSIM_MIN_SIZE}×{SSIM_MIN_SIZE} pixels (the Gaussian window with "
            f"sigma=1.5 is {SSIM_MIN_SIZE} px wide); got {height}×{width}"
        )
    values = []
    for a, b in zip(x.numpy(), y.numpy(), strict=True):
        if a.shape[0] == 1:
            value = structural_similarity(a[0], b[0], **SSIM_SETTINGS)
        else:
            value = structural_similarity(a, b, channel_axis=0, **SSIM_SETTINGS)
        values.append(float(value))
    return torch.tensor(values, dtype=torch.float64)
