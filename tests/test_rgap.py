"""R-GAP on CNN6 (full rank, exact) and CNN6-d (rank deficient), with the rank analysis and COPA index."""

from __future__ import annotations

import pytest
import torch

from fedleak.attacks import get_attack
from fedleak.data.bundled import load_bundled
from fedleak.metrics.image import psnr
from fedleak.observe import observe
from fedleak.training import batch_gradient
from fedleak.types import ModelSpec, ThreatModel


def real_images(dataset: str, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Real test images bundled in the foolbox wheel, as floats in [0, 1]."""
    images = load_bundled(dataset, "test", None)
    return images.images[indices].float() / 255.0, images.labels[indices]


def gradient_observation(model_name: str, images: torch.Tensor, labels: torch.Tensor, activation=None, seed=0):
    """What the server sees of one client's float32 gradient on ``images``."""
    torch.manual_seed(seed)
    spec = ModelSpec(model_name, images.shape[1], images.shape[-1], 10, activation)
    model = spec.build()
    update = batch_gradient(model, images, labels)
    return observe(spec, model.state_dict(), update, "gradient", ThreatModel(), {"batch_size": len(images)})


@pytest.mark.slow
def test_rgap_is_exact_on_cnn6_and_reports_full_rank():
    x, y = real_images("cifar10", [4])
    result = get_attack("rgap")(gradient_observation("cnn6", x, y))
    assert result.status == "ok", result.reason
    assert float(psnr(result.images, x)[0]) >= 40.0
    ranks = result.diagnostics["rank_analysis"]
    assert len(ranks) == 6 and all(r["deficiency"] == 0 and r["rank"] == r["unknowns"] for r in ranks)
    assert result.diagnostics["copa_index"] == 0


@pytest.mark.slow
def test_rgap_finds_the_rank_deficiency_of_cnn6_d():
    x, y = real_images("cifar10", [4])
    result = get_attack("rgap")(gradient_observation("cnn6-d", x, y))
    ranks = {r["layer"]: r for r in result.diagnostics["rank_analysis"]}
    narrow = ranks["body.2"]  # the 20-filter layer
    assert narrow["exact"] and narrow["deficiency"] > 0 and narrow["rank"] < narrow["unknowns"]
    assert result.diagnostics["copa_index"] < 0


def test_rgap_refuses_relu_and_says_what_to_use():
    x, y = real_images("cifar10", [0])
    result = get_attack("rgap")(gradient_observation("rconv-lenet", x, y, "relu"))
    assert result.status == "failed" and "rconv" in result.reason
