"""The images benchmarks tune on and the images they report on, fixed in one place.

Settings (the matching loop's early-stop tolerance and stall rule, the L-BFGS history length, the grey start, the
CPU kernel choice) were chosen on ``TUNING``: CIFAR-10 test images 0–19. Figures quoted in ``bench/README.md`` come
from the held-out sets, which no setting was tuned on:

- ``cifar10-heldout``: CIFAR-10 test images 100–199 of ``cifar10_test_first1000.npz``;
- ``cifar100``: the first 20 CIFAR-100 test images (``cifar100_test_first20.npz``, also bundled);
- ``mnist``: the first 20 MNIST test images (bundled; 28 px grey);
- ``lfw64`` / ``lfw32``: colour LFW faces 100–129 of ``lfw_sample_80px.npz`` (one identity each, 200 classes),
  resized to 64 / 32 px.

The default image prior of the L2 matching attacks (``attacks/priors.py``: TV on for colour images above 32 px) was
chosen on ``lfw64-tuning``: colour LFW faces 0–19 of the same file at 64 px (faces 0–1 were scanned).

Fixture files are read from ``$FEDLEAK_FIXTURES`` (see bench/README.md); bundled sets need nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from fedleak.config.schema import DataConfig
from fedleak.data import load_images


@dataclass(frozen=True)
class BenchImages:
    """A named, fixed list of images: where they come from, which indices, at which size."""

    name: str
    dataset: str
    indices: tuple[int, ...]
    role: str  # "tuning" or "held-out"
    fixture: str | None = None  # file under $FEDLEAK_FIXTURES; None: the bundled test images
    image_size: int | None = None

    def load(self, count: int | None = None, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[int], int]:
        """Images (N×C×H×W in [0, 1]), labels, their dataset indices and the label-space size."""
        indices = list(self.indices[offset:offset + count if count else None])
        if self.fixture is None:
            config = DataConfig(dataset=self.dataset, split="test", image_size=self.image_size)
        else:
            path = Path(os.environ.get("FEDLEAK_FIXTURES", "")) / self.fixture
            if not path.is_file():
                raise SystemExit(f"{self.name}: {path} not found; set FEDLEAK_FIXTURES to the folder holding "
                                 f"{self.fixture}")
            config = DataConfig(dataset=self.dataset, source="npz", path=str(path), image_size=self.image_size)
        image_set = load_images(config)
        images, labels = image_set.get(indices)
        return images, labels, indices, int(image_set.num_classes)

    def describe(self, indices: list[int]) -> str:
        where = self.fixture or "bundled"
        size = f", {self.image_size} px" if self.image_size else ""
        return f"{self.name} ({self.role}): {self.dataset} {where} images {indices[0]}–{indices[-1]}{size}"


SETS: dict[str, BenchImages] = {
    s.name: s
    for s in (
        BenchImages("cifar10-tuning", "cifar10", tuple(range(20)), "tuning"),
        BenchImages("cifar10-heldout", "cifar10", tuple(range(100, 200)), "held-out", "cifar10_test_first1000.npz"),
        BenchImages("cifar100", "cifar100", tuple(range(20)), "held-out", "cifar100_test_first20.npz"),
        BenchImages("mnist", "mnist", tuple(range(20)), "held-out"),
        BenchImages("lfw64", "lfw", tuple(range(100, 130)), "held-out", "lfw_sample_80px.npz", 64),
        BenchImages("lfw32", "lfw", tuple(range(100, 130)), "held-out", "lfw_sample_80px.npz", 32),
        BenchImages("lfw64-tuning", "lfw", tuple(range(20)), "tuning", "lfw_sample_80px.npz", 64),
    )
}
TUNING = SETS["cifar10-tuning"]
HELD_OUT = SETS["cifar10-heldout"]
