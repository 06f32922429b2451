"""Reconstruction metrics: a pure functional core (no state, no Flower), used by the scorer and the report.

- :mod:`~fedleak.metrics.image`: ``mse``, ``psnr`` (peak 1), ``ssim`` (Wang et al. 2004 via scikit-image).
- :mod:`~fedleak.metrics.matching`: ``match_images`` (Hungarian on MSE), ``matched_label_accuracy`` (labels of
  matched pairs), ``label_accuracy`` (multisets).
- :mod:`~fedleak.metrics.reference`: ``ReferenceSet`` (the run's dataset), ``baseline_psnr`` (mean image against each
  true image), ``reidentified`` (nearest dataset image by SSIM is the true one).
- :mod:`~fedleak.metrics.headline`: ``median_psnr`` and friends, the one number of a set of per-image scores (a
  batch, a client, an arm); pure Python.
- :mod:`~fedleak.metrics.score`: ``score_batch`` → ``BatchScore``.

Names load on first use (PEP 562), so ``fedleak.metrics.headline`` is importable without torch, scipy or
scikit-image (the report layer uses it).
"""

from importlib import import_module

_SOURCES = {
    "HIGHER_IS_BETTER": "image", "PEAK": "image", "SSIM_SETTINGS": "image", "mse": "image", "psnr": "image",
    "psnr_from_mse": "image", "ssim": "image",
    "label_accuracy": "matching", "match_images": "matching", "matched_label_accuracy": "matching",
    "pairwise_mse": "matching",
    "ReferenceSet": "reference", "baseline_psnr": "reference", "reidentified": "reference",
    "median_mse": "headline", "median_over_images": "headline", "median_psnr": "headline", "median_ssim": "headline",
    "BatchScore": "score", "ImageScore": "score", "score_batch": "score",
}

__all__ = sorted(_SOURCES)


def __getattr__(name: str):
    if name not in _SOURCES:
        raise AttributeError(f"module 'fedleak.metrics' has no attribute {name!r}")
    value = getattr(import_module(f"fedleak.metrics.{_SOURCES[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
