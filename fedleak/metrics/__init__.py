"""Reconstruction metrics: a pure functional core (no state, no Flower), used by the scorer and the report.

- :mod:`~fedleak.metrics.image`: ``mse``, ``psnr`` (peak 1), ``ssim`` (Wang et al. 2004 via scikit-image).
- :mod:`~fedleak.metrics.matching`: ``match_images`` (Hungarian on MSE), ``label_accuracy`` (multisets).
- :mod:`~fedleak.metrics.score`: ``score_batch`` → ``BatchScore``.
"""

from fedleak.metrics.image import HIGHER_IS_BETTER, PEAK, SSIM_SETTINGS, mse, psnr, psnr_from_mse, ssim
from fedleak.metrics.matching import label_accuracy, match_images, pairwise_mse
from fedleak.metrics.score import BatchScore, ImageScore, score_batch

__all__ = [
    "HIGHER_IS_BETTER",
    "PEAK",
    "SSIM_SETTINGS",
    "BatchScore",
    "ImageScore",
    "label_accuracy",
    "match_images",
    "mse",
    "pairwise_mse",
    "psnr",
    "psnr_from_mse",
    "score_batch",
    "ssim",
]
