"""Test images and one-image observations for the analytic-attack reproductions (``rconv-grid``,
``hybrid-comparison``), and the PSNR summary their tables print.

Images come from ``$FEDLEAK_FIXTURES`` (``mnist_test.npz``, ``cifar10_test_first1000.npz``) when the file is there,
else from the 20 test images bundled with the package (the count is capped and the setting says so). Each image gets
a freshly initialised network seeded with the image's index; the client computes its gradient in float32, as a real
client sends it, and the attacker sees only that gradient and the weights (``ThreatModel()``: nothing granted).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from fedleak.config.schema import DataConfig
from fedleak.data import load_images
from fedleak.metrics.image import psnr
from fedleak.observe import observe
from fedleak.protocol import PublicMetadata
from fedleak.training import batch_gradient
from fedleak.types import ModelSpec, ThreatModel

FIXTURES = {"mnist": "mnist_test.npz", "cifar10": "cifar10_test_first1000.npz"}
TITLES = {"mnist": "MNIST", "cifar10": "CIFAR-10"}
#: PSNR at or above this counts as a success (peak 1, images in [0, 1]).
SUCCESS_DB = 20.0
#: An exact reconstruction (MSE 0) enters the mean as this PSNR, so one exact image cannot make the mean infinite.
EXACT_DB = 150.0


@dataclass
class ImageBatch:
    images: torch.Tensor  # N×C×H×W in [0, 1]
    labels: torch.Tensor
    indices: list[int]  # test-set indices; each seeds its own network
    source: str  # where the images came from, for the table's setting


def load_test_images(dataset: str, count: int, offset: int = 0) -> ImageBatch:
    """``count`` test images from index ``offset``: the fixture file when present, else the bundled ones (capped)."""
    root = os.environ.get("FEDLEAK_FIXTURES")
    path = Path(root) / FIXTURES[dataset] if root else None
    if path is not None and path.is_file():
        image_set = load_images(DataConfig(dataset=dataset, source="npz", path=str(path)))
        where = f"{TITLES[dataset]} test images"
    else:
        image_set = load_images(DataConfig(dataset=dataset, split="test"))
        where = f"bundled {TITLES[dataset]} test images"
    indices = list(range(offset, min(offset + count, len(image_set))))
    if not indices:
        raise ValueError(f"{dataset}: no test images from index {offset} (the bundled set has {len(image_set)})")
    images, labels = image_set.get(indices)
    return ImageBatch(images, labels, indices, f"{where} {indices[0]}–{indices[-1]}")


def observe_one(model: str, image: torch.Tensor, label: torch.Tensor, activation: str | None, seed: int):
    """The observation of one client step at B = 1 on a network freshly initialised with ``seed``."""
    torch.manual_seed(seed)
    spec = ModelSpec(model, image.shape[1], image.shape[-1], 10, activation)
    network = spec.build()
    update = batch_gradient(network, image, label)
    return observe(spec, network.state_dict(), update, "gradient", ThreatModel(), PublicMetadata(batch_size=1))


def psnr_db(reconstruction: torch.Tensor | None, truth: torch.Tensor) -> float:
    """PSNR (peak 1) of one reconstruction; NaN when the attack returned no image, inf when exact."""
    if reconstruction is None or reconstruction.shape != truth.shape:
        return float("nan")  # no image, or not one comparable with the truth: a failure in the table
    return float(psnr(reconstruction, truth).mean())


def summarise(values: list[float]) -> str:
    """"mean X dB, k/N ≥ 20 dB or exact" (no image counts as a failure; exact enters the mean as 150 dB)."""
    n = len(values)
    finite = [min(v, EXACT_DB) for v in values if not math.isnan(v)]
    hits = sum(1 for v in values if not math.isnan(v) and v >= SUCCESS_DB)
    mean = f"{sum(finite) / len(finite):.1f} dB" if finite else "no image"
    return f"mean {mean}, {hits}/{n} ≥ {SUCCESS_DB:.0f} dB or exact"


def success_share(values: list[float]) -> float:
    return sum(1 for v in values if not math.isnan(v) and v >= SUCCESS_DB) / max(len(values), 1)
