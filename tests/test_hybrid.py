"""The hybrid attack: linear systems corrected by gradient matching, no ground truth used."""

from __future__ import annotations

import pytest
import torch
from victims import gradient_observation, real_images

from fedleak.attacks import get_attack
from fedleak.metrics.image import psnr


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
