"""Scores against the run's whole dataset: the mean-image baseline and re-identification.

A PSNR means little on its own: on MNIST a blank image already scores ≈ 10 dB against a digit. Two references
make a score mean something:

- **baseline PSNR**: the PSNR the dataset's mean image (the mean over every image of the data source) scores
  against a true image. An attacker who learned nothing from the update can always output that image, so a
  reconstruction at or below its baseline shows no leakage, whatever its number of dB.
- **re-identification**: whether a reconstruction's nearest neighbour by SSIM is its true image, i.e. whether it
  would pick the right person/record out of a crowd. The scorer asks it against a fixed gallery per data source
  (:mod:`fedleak.metrics.gallery`, :meth:`ReferenceSet.gallery`); :func:`reidentified` here asks it against every
  image of a reference set (``bench/reidentification.py`` measures the two-stage search with it).

The nearest-neighbour search is two-stage, because exact SSIM against every image costs one scikit-image call per
dataset image (≈ 0.8 ms each on 28×28 px, 4 s per reconstruction on MNIST's 5000 images): a cheap pre-filter (one
matrix product over the dataset) keeps the :data:`CANDIDATES` images nearest by MSE, then scikit-image's SSIM
(:data:`~fedleak.metrics.image.SSIM_SETTINGS`) picks among them. An image far by MSE but nearest by SSIM is missed.
``bench/reidentification.py`` compares the two-stage answer with an exhaustive SSIM search on MNIST's 5000 bundled
images (30 queries per distortion, 2 shared CPU cores): with k = 32 they agreed on every query for noisy copies
(σ 0.1–0.5), two-image mixtures (0.7/0.3 and 0.5/0.5) and blanks, and on 29 of 30 blurred copies (σ 1.5 px; k = 8:
27 of 30), at 23–40 ms per reconstruction against ≈ 4 s for 5000 scikit-image calls. A candidate counts as the
true image when its pixels equal it, so an exact duplicate of the true image in the dataset counts too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fedleak.metrics.image import SSIM_MIN_SIZE, psnr, ssim

#: Images kept by the MSE pre-filter before SSIM decides (see bench/reidentification.py for the measured effect).
CANDIDATES = 32
#: Dataset rows converted to float per step of the pre-filter: bounds memory for large datasets.
CHUNK = 4096
#: Datasets up to this many pixel values keep a float32 copy for the pre-filter (MNIST's 5000 images: 3.9 M, 16 MB).
CACHE_PIXELS = 1 << 25
#: Largest per-pixel difference at which a dataset image counts as the true image (float32 rounding of uint8/255).
SAME_PIXELS = 1e-6


@dataclass(frozen=True)
class ReferenceSet:
    """All images of a run's data source, N×C×H×W as stored (``uint8`` or ``float32`` in [0, 1])."""

    images: torch.Tensor
    #: Where the images come from (``ImageSet.source``), quoted in the re-identification gallery's description.
    source: str = "the run's data source"

    def __post_init__(self) -> None:
        if self.images.dim() != 4 or self.images.shape[0] == 0:
            raise ValueError(f"reference images must be a non-empty N×C×H×W tensor, got {tuple(self.images.shape)}")

    @classmethod
    def of(cls, image_set) -> ReferenceSet | None:
        """The reference of an :class:`~fedleak.data.imageset.ImageSet`; ``None`` for fewer than two images
        (a single photo has no population to compare with: its mean image is the photo itself)."""
        if image_set is None or len(image_set) < 2:
            return None
        return cls(image_set.images, str(getattr(image_set, "source", "") or "the run's data source"))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def chunks(self, dtype: torch.dtype = torch.float64):
        """(start, rows flattened to n×D in [0, 1]) in steps of :data:`CHUNK` (bounded memory on large datasets)."""
        for start in range(0, len(self), CHUNK):
            block = self.images[start : start + CHUNK]
            block = block.to(dtype) / 255.0 if block.dtype == torch.uint8 else block.to(dtype)
            yield start, block.flatten(1)

    def float_blocks(self):
        """The pre-filter's float32 blocks: one cached block for small datasets, else converted chunk by chunk."""
        if self.images.numel() > CACHE_PIXELS:
            return self.chunks(torch.float32)
        cached = self.__dict__.get("_float32")
        if cached is None:
            cached = (0, torch.cat([block for _, block in self.chunks(torch.float32)]))
            object.__setattr__(self, "_float32", cached)
        return [cached]

    def squared_norms(self) -> torch.Tensor:
        """‖y‖² of every dataset image (float64, cached), for the pre-filter's distance expansion."""
        cached = self.__dict__.get("_norms")
        if cached is None:
            cached = torch.cat([(block**2).sum(dim=1) for _, block in self.chunks()])
            object.__setattr__(self, "_norms", cached)
        return cached

    def mean_image(self) -> torch.Tensor:
        """The dataset's mean image, C×H×W float64 (cached: the reference is immutable)."""
        cached = self.__dict__.get("_mean")
        if cached is None:
            total = sum(block.sum(dim=0) for _, block in self.chunks())
            cached = (total / len(self)).reshape(self.images.shape[1:])
            object.__setattr__(self, "_mean", cached)
        return cached

    def image(self, index: int) -> torch.Tensor:
        """Dataset image ``index`` as C×H×W float64 in [0, 1]."""
        row = self.images[index]
        return row.double() / 255.0 if row.dtype == torch.uint8 else row.double()


def baseline_psnr(reference: ReferenceSet, true_images: torch.Tensor) -> torch.Tensor:
    """PSNR (dB, peak 1) of the dataset's mean image against each true image: one float64 per image."""
    true = true_images.detach().to("cpu", torch.float64)
    _check_shape(reference, true)
    mean = reference.mean_image().unsqueeze(0).expand_as(true)
    return psnr(mean, true)


def mse_candidates(reference: ReferenceSet, images: torch.Tensor, k: int = CANDIDATES) -> np.ndarray:
    """Indices (R×k, nearest first) of the ``k`` dataset images nearest by MSE to each of the R×C×H×W ``images``.

    Distances use ‖y‖² − 2x·y (one float32 matrix product per chunk; ‖x‖² is the same for every candidate and the
    mean's 1/D does not change the order): its rounding can swap near-equal candidates, which does not matter for a
    pre-filter whose survivors SSIM then ranks exactly.
    """
    queries = images.detach().to("cpu", torch.float32).flatten(1)
    distances = torch.empty(len(queries), len(reference), dtype=torch.float64)
    for start, block in reference.float_blocks():
        distances[:, start : start + len(block)] = (-2.0 * queries @ block.T).double()
    distances += reference.squared_norms()[None, :]
    k = min(k, len(reference))
    return torch.topk(distances, k, dim=1, largest=False, sorted=True).indices.numpy()


def nearest_by_ssim(reference: ReferenceSet, images: torch.Tensor, k: int = CANDIDATES) -> list[int]:
    """For each of the R×C×H×W ``images``: the dataset index with the highest SSIM among its ``k`` nearest by MSE."""
    found = []
    for image, candidates in zip(images, mse_candidates(reference, images, k), strict=True):
        stack = torch.stack([reference.image(int(i)) for i in candidates])
        scores = ssim(image.detach().double().unsqueeze(0).expand_as(stack), stack).numpy()
        found.append(int(candidates[int(np.argmax(scores))]))
    return found


def reidentified(reference: ReferenceSet, recon: torch.Tensor, true: torch.Tensor,
                 k: int = CANDIDATES) -> list[bool] | None:
    """Per pair of the R×C×H×W ``recon`` and ``true``: whether the reconstruction's nearest dataset image by SSIM is
    its true image. ``None`` below SSIM's 11×11 window, where this project's SSIM setting is not defined."""
    if min(true.shape[-2:]) < SSIM_MIN_SIZE:
        return None
    _check_shape(reference, true)
    if len(recon) == 0:
        return []
    true = true.detach().to("cpu", torch.float64)
    nearest = nearest_by_ssim(reference, recon.detach().clamp(0, 1), k)
    return [bool((reference.image(i) - t).abs().max() <= SAME_PIXELS) for i, t in zip(nearest, true, strict=True)]


def _check_shape(reference: ReferenceSet, true: torch.Tensor) -> None:
    if tuple(true.shape[1:]) != tuple(reference.images.shape[1:]):
        raise ValueError(f"true images are {tuple(true.shape[1:])} but the dataset's images are "
                         f"{tuple(reference.images.shape[1:])}: score against the run's own data source")
