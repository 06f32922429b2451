"""The metrics of one reconstructed batch against its ground truth (``fedleak.scoring`` turns them into rows).

Conventions (all stated once, here):
- Reconstructions are clamped to [0, 1] before scoring (the Reconstruction type promises that range, and the
  projection can only bring an image closer to a true image in [0, 1]). True images outside [0, 1] are an error.
- Pairs come from :func:`~fedleak.metrics.matching.match_images` (Hungarian on MSE): the attacker cannot know the
  batch's order, so any one-to-one pairing of its images with the true ones is fair game.
- Every figure is over all B *true* images. A true image without a reconstruction is *not recovered*: ``None`` per
  image (``-`` in leakage.csv), and in the batch's headline it counts as the worst possible value (PSNR −∞).
- ``psnr``, ``ssim`` and ``mse`` are the median over the B true images (:mod:`fedleak.metrics.headline`): for an even
  B the worse of the two middle images, never a mean of dB, so a batch is at or above a threshold only when more
  than half its images are. ``psnr`` is ``inf`` only when every image is exact (an exact median image with an
  inexact one elsewhere gives the best inexact image's PSNR). ``ssim`` is ``None`` for images under 11×11 pixels
  (smaller than SSIM's Gaussian window), while the other scores are still computed.
- ``success``, ``rates``, ``reidentified`` and ``label_accuracy`` are shares of the B true images: an image
  without a matched reconstruction counts as a failure, so an attack that returned nothing scores 0.0, not ``None``.
- ``label_accuracy`` compares the label an attack gave each reconstruction with the label of the true image that
  reconstruction was matched to (``label_pairing`` ``"matched"``). Only when the labels cannot be paired with images
  (no images, or a different count) are they compared as multisets (``"multiset"``).
- ``baseline_psnr`` (the dataset's mean image against each true image, median over the B images by the same rule)
  and ``reidentified`` need the run's dataset (a :class:`~fedleak.metrics.reference.ReferenceSet`); without one
  they are ``None``.
- :meth:`BatchScore.to_dict` writes ``inf`` as the string ``"inf"`` (and −∞ as ``"-inf"``): JSON has no infinity.
"""

import math
from dataclasses import asdict, dataclass, field, replace

import torch

from fedleak.defaults import DEFAULT_SUCCESS_PSNR
from fedleak.metrics.headline import median_mse, median_psnr, median_ssim
from fedleak.metrics.image import SSIM_MIN_SIZE, mse, psnr_from_mse, ssim
from fedleak.metrics.matching import label_accuracy, match_images, matched_label_accuracy
from fedleak.metrics.reference import ReferenceSet, baseline_psnr, reidentified

#: Thresholds reported for every batch; iDLG counts ``mse <= 1e-3`` as a successful reconstruction.
PSNR_THRESHOLDS = (20.0, 30.0, 40.0)
MSE_THRESHOLD = 1e-3


@dataclass(frozen=True)
class ImageScore:
    """One true image and its matched reconstruction (``recon_index`` ``None`` when unmatched)."""

    true_index: int
    recon_index: int | None
    psnr: float | None
    ssim: float | None
    mse: float | None
    #: PSNR of the dataset's mean image against this true image (None without a reference set).
    baseline_psnr: float | None = None
    #: Whether the matched reconstruction's nearest dataset image by SSIM is this image (None: not computed).
    reidentified: bool | None = None


@dataclass(frozen=True)
class BatchScore:
    """Scores of one reconstructed batch; see the module docstring for the conventions."""

    batch_size: int
    #: Medians over the B true images (not recovered: PSNR/SSIM −∞, MSE +∞).
    psnr: float | None
    ssim: float | None
    mse: float | None
    label_accuracy: float | None
    success: float
    success_psnr: float
    rates: dict[str, float]
    per_image: list[ImageScore] = field(default_factory=list)
    baseline_psnr: float | None = None
    reidentified: float | None = None
    label_pairing: str | None = None

    def to_dict(self) -> dict:
        """A JSON-serialisable dict; ``inf`` becomes the string ``"inf"``."""
        return _json_safe(asdict(self))


def _json_safe(value):
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _check_true_images(true_images: torch.Tensor) -> None:
    if true_images.dim() != 4 or true_images.shape[0] == 0:
        raise ValueError(f"true images must be a non-empty B×C×H×W batch, got shape {tuple(true_images.shape)}")
    low, high = float(true_images.min()), float(true_images.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(f"true images must lie in [0, 1] (PSNR uses peak 1), found values in [{low:.3g}, {high:.3g}]")


def score_batch(
    recon_images: torch.Tensor | None,
    recon_labels: torch.Tensor | None,
    true_images: torch.Tensor,
    true_labels: torch.Tensor,
    success_psnr: float = DEFAULT_SUCCESS_PSNR,
    reference: ReferenceSet | None = None,
) -> BatchScore:
    """Match reconstructions to the true batch one-to-one and score images and labels.

    Args:
        recon_images: R×C×H×W reconstructions in [0, 1], any order, R may differ from B; ``None`` if none.
        recon_labels: the label of each reconstruction (class indices or R×K scores, aligned with
            ``recon_images``); ``None`` if the attack gave none.
        true_images: B×C×H×W ground truth in [0, 1].
        true_labels: the B true class indices.
        success_psnr: PSNR (dB) at or above which a reconstructed image counts as a success.
        reference: every image of the run's data source, for ``baseline_psnr`` and ``reidentified``.

    Returns:
        The batch's :class:`BatchScore`.
    """
    _check_true_images(true_images)
    true_images = true_images.detach().to("cpu", torch.float64)
    batch_size = true_images.shape[0]
    pairs: list[tuple[int, int]] = []
    if recon_images is not None:
        recon_images = recon_images.detach().to("cpu", torch.float64).clamp(0.0, 1.0)
        pairs = match_images(recon_images, true_images)
    per_image = _pair_scores(pairs, recon_images, true_images)
    if reference is not None:
        per_image = _reference_scores(per_image, reference, recon_images, true_images)
    matched = [s for s in per_image if s.recon_index is not None]

    def share(passed) -> float:
        return sum(1 for s in matched if passed(s)) / batch_size

    rates = {f"psnr>={threshold:g}": share(lambda s, t=threshold: s.psnr >= t) for threshold in PSNR_THRESHOLDS}
    rates[f"mse<={MSE_THRESHOLD:g}"] = share(lambda s: s.mse <= MSE_THRESHOLD)
    labels, pairing = _label_score(pairs, recon_images, recon_labels, true_labels)
    return BatchScore(
        batch_size=batch_size,
        psnr=median_psnr(s.psnr for s in per_image),
        ssim=None if min(true_images.shape[-2:]) < SSIM_MIN_SIZE else median_ssim(s.ssim for s in per_image),
        mse=median_mse(s.mse for s in per_image),
        label_accuracy=labels,
        success=share(lambda s: s.psnr >= success_psnr),
        success_psnr=success_psnr,
        rates=rates,
        per_image=per_image,
        baseline_psnr=None if reference is None else median_psnr(s.baseline_psnr for s in per_image),
        reidentified=_reidentified_share(per_image, reference, batch_size),
        label_pairing=pairing,
    )


def _pair_scores(pairs: list[tuple[int, int]], recon: torch.Tensor | None, true: torch.Tensor) -> list[ImageScore]:
    """MSE, PSNR and SSIM of every matched pair; unmatched true images get empty scores."""
    per_image = [ImageScore(i, None, None, None, None) for i in range(true.shape[0])]
    if not pairs:
        return per_image
    matched_recon, matched_true = recon[[r for r, _ in pairs]], true[[t for _, t in pairs]]
    mse_values = mse(matched_recon, matched_true)
    psnr_values = psnr_from_mse(mse_values)
    ssim_values = ssim(matched_recon, matched_true) if min(true.shape[-2:]) >= SSIM_MIN_SIZE else None
    for k, (r, t) in enumerate(pairs):
        ssim_value = None if ssim_values is None else float(ssim_values[k])
        per_image[t] = ImageScore(t, r, float(psnr_values[k]), ssim_value, float(mse_values[k]))
    return per_image


def _reference_scores(per_image: list[ImageScore], reference: ReferenceSet, recon: torch.Tensor | None,
                      true: torch.Tensor) -> list[ImageScore]:
    """Each image's baseline PSNR, and whether its matched reconstruction re-identifies it in the dataset."""
    baselines = baseline_psnr(reference, true)
    matched = [s for s in per_image if s.recon_index is not None]
    found: dict[int, bool] = {}
    if matched:
        recon_idx, true_idx = [s.recon_index for s in matched], [s.true_index for s in matched]
        answers = reidentified(reference, recon[recon_idx], true[true_idx])
        found = {} if answers is None else {s.true_index: a for s, a in zip(matched, answers, strict=True)}
    return [replace(s, baseline_psnr=float(baselines[s.true_index]), reidentified=found.get(s.true_index))
            for s in per_image]


def _reidentified_share(per_image: list[ImageScore], reference: ReferenceSet | None, batch_size: int) -> float | None:
    """Share of the true images re-identified; None without a reference or where SSIM is undefined (< 11 px)."""
    if reference is None or any(s.recon_index is not None and s.reidentified is None for s in per_image):
        return None
    return sum(1 for s in per_image if s.reidentified) / batch_size


def _label_score(pairs, recon_images, recon_labels, true_labels) -> tuple[float | None, str | None]:
    """Label accuracy on the matched pairs where labels line up with images, else on the label multisets."""
    if recon_labels is None:
        return None, None
    if recon_images is not None and len(recon_labels) == len(recon_images):
        return matched_label_accuracy(pairs, recon_labels, true_labels), "matched"
    return label_accuracy(recon_labels, true_labels), "multiset"
