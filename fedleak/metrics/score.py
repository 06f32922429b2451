"""The metrics of one reconstructed batch against its ground truth (``fedleak.scoring`` turns them into rows).

Conventions (all stated once, here):
- Reconstructions are clamped to [0, 1] before scoring (the Reconstruction type promises that range, and the
  projection can only bring an image closer to a true image in [0, 1]). True images outside [0, 1] are an error.
- Ground truth never chooses which reconstructions count (:mod:`fedleak.metrics.pairing`): with R ≤ B the R
  reconstructions are paired one-to-one with true images (Hungarian on MSE: the attacker cannot know the batch's
  order); with R > B every true image is scored against all R and keeps the median. ``reconstructions`` records R.
- Every figure is over all B *true* images. A true image without a reconstruction is *not recovered*: ``None`` per
  image (``-`` in leakage.csv), and in the batch's headline it counts as the worst possible value (PSNR −∞).
- ``psnr``, ``ssim`` and ``mse`` are the median over the B true images (:mod:`fedleak.metrics.headline`): for an even
  B the worse of the two middle images, never a mean of dB, so a batch is at or above a threshold only when more
  than half its images are. ``psnr`` is ``inf`` only when every image is exact (an exact median image with an
  inexact one elsewhere gives the best inexact image's PSNR). ``ssim`` is ``None`` for images under 11×11 pixels
  (smaller than SSIM's Gaussian window), while the other scores are still computed.
- ``success`` and ``rates`` are shares of the B true images: an image without a reconstruction counts as a
  failure, so an attack that returned nothing scores 0.0, not ``None``.
- ``label_accuracy`` compares the label an attack gave each reconstruction with the label of the true image that
  reconstruction was paired with (``label_pairing`` ``"matched"``). Where the labels cannot be paired with images
  (no images, a different count, or R > B) they are compared as multisets (``"multiset"``).
- ``baseline_psnr`` (the dataset's mean image against each true image, median over the B images by the same rule)
  needs the run's dataset (a :class:`~fedleak.metrics.reference.ReferenceSet`). So does re-identification, asked
  against the dataset's fixed gallery (:mod:`fedleak.metrics.gallery`, described in ``gallery`` and
  ``gallery_size``): ``reidentified`` is the recall (share of the B true images some reconstruction re-identifies),
  ``reidentified_precision`` the precision (share of the R reconstructions that re-identify some true image).
  Without a dataset all of them are ``None``.
- :meth:`BatchScore.to_dict` writes ``inf`` as the string ``"inf"`` (and −∞ as ``"-inf"``): JSON has no infinity.
"""

import math
from dataclasses import asdict, dataclass, field, replace

import torch

from fedleak.defaults import DEFAULT_SUCCESS_PSNR
from fedleak.metrics.gallery import Gallery, recall_and_precision
from fedleak.metrics.headline import median_mse, median_psnr, median_ssim
from fedleak.metrics.image import SSIM_MIN_SIZE
from fedleak.metrics.matching import label_accuracy, match_images, matched_label_accuracy
from fedleak.metrics.pairing import blind_scores, paired_scores
from fedleak.metrics.reference import ReferenceSet, baseline_psnr

#: Thresholds reported for every batch; iDLG counts ``mse <= 1e-3`` as a successful reconstruction.
PSNR_THRESHOLDS = (20.0, 30.0, 40.0)
MSE_THRESHOLD = 1e-3


@dataclass(frozen=True)
class ImageScore:
    """One true image: its paired reconstruction (``recon_index``; None when unmatched or when R > B) and scores
    (None when not recovered; with R > B the medians over all R reconstructions)."""

    true_index: int
    recon_index: int | None
    psnr: float | None
    ssim: float | None
    mse: float | None
    #: PSNR of the dataset's mean image against this true image (None without a reference set).
    baseline_psnr: float | None = None
    #: Whether some reconstruction re-identifies this image in the gallery (None: not computed).
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
    #: Recall: share of the B true images re-identified by at least one of the R reconstructions.
    reidentified: float | None = None
    label_pairing: str | None = None
    #: R, the number of images the attack returned.
    reconstructions: int = 0
    #: Precision: share of the R reconstructions that re-identify some true image (None: R = 0 or not computed).
    reidentified_precision: float | None = None
    #: The re-identification gallery (which images) and its size, without the batch's own images.
    gallery: str | None = None
    gallery_size: int | None = None

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
    """Score every reconstruction against the true batch: images, labels, and (with ``reference``) the baseline and
    re-identification.

    Args:
        recon_images: R×C×H×W reconstructions in [0, 1], any order, R may differ from B; ``None`` if none.
        recon_labels: the label of each reconstruction (class indices or R×K scores, aligned with
            ``recon_images``); ``None`` if the attack gave none.
        true_images: B×C×H×W ground truth in [0, 1].
        true_labels: the B true class indices.
        success_psnr: PSNR (dB) at or above which a reconstructed image counts as a success.
        reference: every image of the run's data source, for ``baseline_psnr`` and re-identification.

    Returns:
        The batch's :class:`BatchScore`.
    """
    _check_true_images(true_images)
    true_images = true_images.detach().to("cpu", torch.float64)
    batch_size = true_images.shape[0]
    if recon_images is not None:
        recon_images = recon_images.detach().to("cpu", torch.float64).clamp(0.0, 1.0)
    count = 0 if recon_images is None else int(recon_images.shape[0])
    pairs = match_images(recon_images, true_images) if 0 < count <= batch_size else []
    scores = blind_scores(recon_images, true_images) if count > batch_size else paired_scores(pairs, recon_images,
                                                                                              true_images)
    per_image = [ImageScore(t, *values) for t, values in enumerate(scores)]
    found = [s for s in per_image if s.psnr is not None]

    def share(passed) -> float:
        return sum(1 for s in found if passed(s)) / batch_size

    rates = {f"psnr>={threshold:g}": share(lambda s, t=threshold: s.psnr >= t) for threshold in PSNR_THRESHOLDS}
    rates[f"mse<={MSE_THRESHOLD:g}"] = share(lambda s: s.mse <= MSE_THRESHOLD)
    labels, pairing = _label_score(pairs, count, recon_labels, true_labels)
    score = BatchScore(
        batch_size=batch_size,
        psnr=median_psnr(s.psnr for s in per_image),
        ssim=None if min(true_images.shape[-2:]) < SSIM_MIN_SIZE else median_ssim(s.ssim for s in per_image),
        mse=median_mse(s.mse for s in per_image),
        label_accuracy=labels,
        success=share(lambda s: s.psnr >= success_psnr),
        success_psnr=success_psnr,
        rates=rates,
        per_image=per_image,
        label_pairing=pairing,
        reconstructions=count,
    )
    return score if reference is None else _with_reference(score, reference, recon_images, true_images)


def _with_reference(score: BatchScore, reference: ReferenceSet, recon: torch.Tensor | None,
                    true: torch.Tensor) -> BatchScore:
    """The score plus each image's baseline PSNR and the re-identification recall and precision in the gallery."""
    baselines = baseline_psnr(reference, true)
    gallery = Gallery.for_reference(reference)
    found = [] if recon is None else gallery.identify(recon, true)
    flags: list[bool | None] = [None] * len(true)
    recall = precision = None
    if found is not None:
        recall, precision, flags = recall_and_precision(found, len(true))
    per_image = [replace(s, baseline_psnr=float(baselines[s.true_index]), reidentified=flags[s.true_index])
                 for s in score.per_image]
    return replace(score, per_image=per_image, baseline_psnr=median_psnr(float(b) for b in baselines),
                   reidentified=recall, reidentified_precision=precision, gallery=gallery.description,
                   gallery_size=gallery.size)


def _label_score(pairs, count: int, recon_labels, true_labels) -> tuple[float | None, str | None]:
    """Label accuracy on the paired images where labels line up with them, else on the label multisets."""
    if recon_labels is None:
        return None, None
    if 0 < count == len(recon_labels) and pairs:
        return matched_label_accuracy(pairs, recon_labels, true_labels), "matched"
    return label_accuracy(recon_labels, true_labels), "multiset"
