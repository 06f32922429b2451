"""R-GAP on CNN6 (full rank, exact) and CNN6-d (rank deficient), with the rank analysis and COPA index."""

from __future__ import annotations

import pytest
from victims import gradient_observation, real_images

from fedleak.attacks import get_attack
from fedleak.metrics.image import psnr


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
