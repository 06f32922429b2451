"""One honest number for a set of per-image scores: the median over every true image, never a mean of dB.

The same rule gives a batch's row (``leakage.csv``), a client's worst case and an arm's frontier figure
(``fedleak.report``), so the three always read alike:

- **Every true image counts.** An image nobody reconstructed is *not recovered*: it enters the median as the worst
  possible value (PSNR and SSIM −∞, MSE +∞), i.e. it ranks below every reconstruction, exactly as one more failure
  would. A batch of 32 with two reconstructions has a median of −∞ (not recovered), whatever those two are.
- **The worse middle image, never a mean of two.** For an even count the median is the worse of the two middle
  images (the lower PSNR, the higher MSE). A median at or above a threshold then means that more than half of the
  images are at or above it: a batch is drawn above the success line only when at least half its images are.
  One image at 6.3 dB and one at 54.6 dB give 6.3 dB, not 30.46 dB (the mean of their dB).
- **∞ only when every image is exact.** When the median image is exact (PSNR ∞, MSE 0) but some other image is not,
  the headline is the best inexact image's value instead: a lower bound on the median, so that one exact copy (or a
  majority of them) never reads as an exact batch. The per-image values and the success rate say the rest.

Pure Python (no torch), so the report layer can use it without loading the image metrics.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

#: PSNR of a true image nobody reconstructed, as it enters a median (written "-" per image in leakage.csv).
NOT_RECOVERED_PSNR = -math.inf


def _worse_median(values: list[float], higher_is_better: bool) -> float:
    """The median of a non-empty list; for an even count the worse of the two middle values."""
    ordered = sorted(values, reverse=not higher_is_better)  # worst first
    return ordered[(len(ordered) - 1) // 2]


def median_over_images(values: Iterable[float | None], higher_is_better: bool = True,
                       exact: float | None = None) -> float | None:
    """The headline of per-image scores (see the module docstring); ``None`` for no images at all.

    Args:
        values: one score per true image; ``None`` (or NaN) for an image with no reconstruction.
        higher_is_better: True for PSNR and SSIM, False for MSE (sets which value is "worst").
        exact: the score of an exact copy (``inf`` for PSNR, ``0.0`` for MSE): the headline is ``exact`` only when
            every image is; ``None`` for scores without that rule (SSIM).

    Example:
        >>> median_over_images([6.3, 54.6])
        6.3
        >>> median_over_images([40.0, None, None, 20.0])
        -inf
        >>> median_over_images([math.inf, math.inf, 20.0], exact=math.inf)
        20.0
    """
    worst = -math.inf if higher_is_better else math.inf
    scores = [worst if v is None or math.isnan(v) else float(v) for v in values]
    if not scores:
        return None
    middle = _worse_median(scores, higher_is_better)
    if exact is not None and middle == exact and any(v != exact for v in scores):
        inexact = [v for v in scores if v != exact]
        return max(inexact) if higher_is_better else min(inexact)
    return middle


def median_psnr(values: Iterable[float | None]) -> float | None:
    """The headline PSNR of per-image PSNRs (None: not recovered): ∞ only when every image is exact.

    Example:
        >>> median_psnr([math.inf, math.inf])
        inf
        >>> median_psnr([math.inf, None])
        -inf
    """
    return median_over_images(values, higher_is_better=True, exact=math.inf)


def median_mse(values: Iterable[float | None]) -> float | None:
    """The headline MSE of per-image MSEs (None: not recovered, +∞): 0 only when every image is exact."""
    return median_over_images(values, higher_is_better=False, exact=0.0)


def median_ssim(values: Iterable[float | None]) -> float | None:
    """The headline SSIM of per-image SSIMs (None: not recovered, −∞)."""
    return median_over_images(values, higher_is_better=True)
