"""Reconstruction metrics: a pure functional core (no state, no Flower), used by the scorer and the report.

- :mod:`~fedleak.metrics.image`: ``mse``, ``psnr`` (peak 1), ``ssim`` (Wang et al. 2004 via scikit-image).
- :mod:`~fedleak.metrics.matching`: ``match_images`` (Hungarian on MSE), ``matched_label_accuracy`` (labels of
  matched pairs), ``label_accuracy`` (multisets).
- :mod:`~fedleak.metrics.reference`: ``ReferenceSet`` (the run's dataset), ``baseline_psnr`` (mean image against each
  true image), ``reidentified`` (nearest dataset image by SSIM is the true one).
- :mod:`~fedleak.metrics.score`: ``score_batch`` → ``BatchScore``.
"""

from fedleak.metrics.image import HIGHER_IS_BETTER, PEAK, SSIM_SETTINGS, mse, psnr, psnr_from_mse, ssim
from fedleak.metrics.matching import label_accuracy, match_images, matched_label_accuracy, pairwise_mse
from fedleak.metrics.reference import ReferenceSet, baseline_psnr, reidentified
from fedleak.metrics.score import BatchScore, ImageScore, score_batch

__all__ = [
    "HIGHER_IS_BETTER",
    "PEAK",
    "SSIM_SETTINGS",
    "BatchScore",
    "ImageScore",
    "ReferenceSet",
    "baseline_psnr",
    "label_accuracy",
    "match_images",
    "matched_label_accuracy",
    "mse",
    "pairwise_mse",
    "psnr",
    "psnr_from_mse",
    "reidentified",
    "score_batch",
    "ssim",
]
