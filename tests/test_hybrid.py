"""The hybrid attack: linear systems corrected by gradient matching, no ground truth used."""

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
def test_hybrid_is_at_least_as_good_as_rgap_on_a_deficient_net():
    x, y = real_images("cifar10", [5])
    observation = gradient_observation("hybrid-cnn-a", x, y)
    rgap = get_attack("rgap")(observation)
    hybrid = get_attack("hybrid", image_iterations=150)(observation)
    assert rgap.status == hybrid.status == "ok", (rgap.reason, hybrid.reason)
    assert rgap.diagnostics["layers"][0]["deficiency"] > 0  # the linear system alone is not enough here
    assert float(psnr(hybrid.images, x)[0]) >= float(psnr(rgap.images, x)[0])
    assert hybrid.labels.tolist() == y.tolist()  # inferred from the gradient, not granted
    correction = hybrid.diagnostics["corrections"][0]
    assert correction["layer"] == "body.0" and "objective_after" in correction


def test_hybrid_skips_correction_when_the_system_is_unique():
    x, y = real_images("mnist", [0])
    result = get_attack("hybrid", image_iterations=5)(gradient_observation("lenet", x, y))
    assert result.status == "ok", result.reason
    assert all("skipped" in c for c in result.diagnostics["corrections"])
    assert float(psnr(result.images, x)[0]) >= 40.0
    assert torch.equal(result.labels, y)
