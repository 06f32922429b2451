"""R-CONV on real images: exact recovery where the paper's rank conditions hold, honest reports where not."""

from __future__ import annotations

import numpy as np
import pytest
from victims import gradient_observation, real_images

from fedleak.attacks import get_attack
from fedleak.metrics.image import psnr

REPORT_FIELDS = {"layer", "method", "unknowns", "rank", "deficiency", "residual", "filters_kernel_condition"}


@pytest.mark.slow
@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
@pytest.mark.parametrize("index", [0, 7])
def test_rconv_is_exact_on_its_lenet(activation, index):
    x, y = real_images("cifar10", [index])
    result = get_attack("rconv")(gradient_observation("rconv-lenet", x, y, activation))
    assert result.status == "ok", result.reason
    assert float(psnr(result.images, x)[0]) >= 40.0
    assert result.labels.tolist() == y.tolist()
    layers = result.diagnostics["layers"]
    assert all(REPORT_FIELDS <= set(layer) for layer in layers)
    assert result.diagnostics["unique"]
    # The gradient-only condition filters·kernel² ≥ H·W fails only at the first layer (12·25 < 32·32).
    assert [layer["filters_kernel_condition"] for layer in layers] == [False, True, True, True]


@pytest.mark.slow
def test_rconv_is_exact_on_dlg_lenet_mnist():
    x, y = real_images("mnist", [0])
    result = get_attack("rconv")(gradient_observation("lenet", x, y))
    assert result.status == "ok", result.reason
    assert float(psnr(result.images, x)[0]) >= 40.0
    layers = result.diagnostics["layers"]
    assert [layer["filters_kernel_condition"] for layer in layers] == [False, True, True]
    # Layer 2 (stride 2, 12 filters): gradient rows alone miss odd-odd pixels; forward rows fill them.
    assert layers[1]["gradient_rank_per_channel"] < 14 * 14 and layers[1]["deficiency"] == 0


@pytest.mark.slow
def test_rconv_reports_a_mixture_for_batches():
    x, y = real_images("mnist", [0, 1])
    result = get_attack("rconv")(gradient_observation("lenet", x, y))
    assert result.status == "ok"
    assert result.images.shape == x.shape
    assert "mixture" in result.diagnostics["batch_mixture"]
    assert result.labels is None  # the bias-sign label rule holds for one image only


def test_rconv_reports_deficient_layers_when_dead_relus_remove_rows():
    x, y = real_images("cifar10", [3])
    result = get_attack("rconv")(gradient_observation("rconv-lenet-o", x, y, "relu"))
    deficiencies = [layer["deficiency"] for layer in result.diagnostics["layers"]]
    if all(d == 0 for d in deficiencies):
        pytest.skip("no dead-ReLU deficiency for this draw")
    assert not result.diagnostics["unique"]
    assert float(psnr(result.images, x)[0]) < 40.0  # the report says why: a layer is not uniquely solvable


def test_rconv_rejects_bad_config():
    from fedleak.errors import UserError

    with pytest.raises(UserError):
        get_attack("rconv", first_layer="sideways")
    assert np.isfinite(get_attack("rconv", rcond=1e-8).config.rcond)


@pytest.mark.parametrize(
    "seed, index, why",
    [(13, 0, "the 3-filter layer is rank deficient: dead ReLUs remove its rows"), (7, 7, "a live unit below dead_tol")],
)
def test_rconv_repairs_the_relu_pattern_a_layer_above_got_wrong(seed, index, why):
    x, y = real_images("cifar10", [index])
    observation = gradient_observation("rconv-lenet", x, y, "relu", seed=seed)
    plain = get_attack("rconv", relu_repair=False)(observation)
    assert float(psnr(plain.images, x)[0]) < 40.0, why
    result = get_attack("rconv")(observation)
    assert float(psnr(result.images, x)[0]) >= 40.0
    notes = [note for layer in result.diagnostics["layers"] for note in layer["notes"]]
    assert any(note.startswith("ReLU pattern repair") for note in notes)
