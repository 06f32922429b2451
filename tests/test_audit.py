"""``fedleak audit``: per-layer rank analysis of registered models, and the stride-aware rank condition."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from fedleak.attacks.conv_constraints import gradient_matrix
from fedleak.attacks.conv_network import ConvGeometry
from fedleak.drivers.audit import audit, gradient_ranks, residue_blocks, stacked_rank
from fedleak.drivers.cli.main import main


@pytest.fixture(autouse=True)
def one_thread():
    # The dense rank computations are small; one BLAS/torch thread keeps them from fighting other work.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)




def test_cnn6_d_on_cifar10_reports_its_deficient_layer(tmp_path, capsys):
    out = tmp_path / "audit.json"
    assert main(["audit", "--model", "cnn6-d", "--dataset", "cifar10", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    report = json.loads(out.read_text())
    layers = {layer["layer"]: layer for layer in report["layers"]}
    # R-GAP's example: narrowing layer 2 to 20 filters leaves its stacked system under-determined.
    deficient = [name for name, layer in layers.items() if layer["deficiency"]]
    assert deficient == ["body.2"]
    layer = layers["body.2"]
    assert layer["rank_exact"] and layer["stacked_rank"] < layer["unknowns"] == 12 * 17 * 17
    assert report["verdict"] == "hybrid"
    assert report["copa"] < 0 and report["total_deficiency"] == layer["deficiency"]
    assert "body.2" in text and "verdict: not exactly recoverable" in text
    assert f"deficient by {layer['deficiency']}" in text


def test_cnn6_is_full_rank_in_every_layer():
    report = audit("cnn6", "cifar10")
    convs = [layer for layer in report.layers if layer.kind == "conv"]
    assert len(convs) == 6
    assert all(layer.rank_exact and layer.deficiency == 0 for layer in report.layers)
    assert report.copa == 0 and report.total_deficiency == 0
    # Full rank only with R-GAP's forward rows: layer 2's stride leaves one residue class short on gradients alone.
    assert not convs[1].gradient_full
    assert report.verdict == "rgap"


def test_o_cnn6_is_registered_and_its_three_filter_layer_inverts_from_gradients(capsys):
    assert main(["models"]) == 0
    assert any(line.split()[:1] == ["o-cnn6"] for line in capsys.readouterr().out.splitlines())
    report = audit("o-cnn6", "mnist")
    last = [layer for layer in report.layers if layer.kind == "conv"][-1]
    assert last.filters == 3 and last.input_shape == (64, 4, 4)
    assert last.gradient_full and last.gradient_rank == last.unknowns  # 3·9 = 27 rows ≥ 16 pixels per channel
    assert report.verdict in {"rconv", "rgap", "hybrid"}


def _stride2_geometry() -> ConvGeometry:
    conv = nn.Conv2d(2, 12, kernel_size=5, stride=2, padding=2)
    return ConvGeometry.from_module(conv, 16, 16)


def test_stride_two_gradient_system_splits_into_four_residue_blocks():
    geom = _stride2_geometry()
    delta = np.random.default_rng(0).standard_normal((12, geom.out_h, geom.out_w))
    A = gradient_matrix(delta, geom).toarray()
    blocks = residue_blocks(geom)
    assert len(blocks) == 4
    # Every row and every pixel belongs to exactly one class, and no row reaches outside its class.
    assert sorted(np.concatenate([rows for _, rows, _ in blocks])) == list(range(geom.gradient_rows))
    assert sorted(np.concatenate([cols for _, _, cols in blocks])) == list(range(geom.pixels))
    outside = A.copy()
    for _, rows, cols in blocks:
        outside[np.ix_(rows, cols)] = 0
    assert not outside.any()


def test_stride_two_ranks_per_residue_class_are_the_hand_counted_ones():
    # 5×5 kernel, stride 2, padding 2: offsets u with (u − 2) even are {0, 2, 4}, odd {1, 3}. Each class has 8×8 pixels,
    # so 12 filters give 12·3·3 = 108, 12·3·2 = 72, 72 and 12·2·2 = 48 rows: the odd/odd class is short (48 < 64)
    # although 12·25 = 300 ≥ 256 = H·W holds for the whole layer.
    geom = _stride2_geometry()
    delta = np.random.default_rng(1).standard_normal((12, geom.out_h, geom.out_w))
    classes = {c.residue: c for c in gradient_ranks(delta, geom)}
    assert {r: (c.rows, c.pixels) for r, c in classes.items()} == {
        (0, 0): (108, 64), (0, 1): (72, 64), (1, 0): (72, 64), (1, 1): (48, 64)
    }
    assert {r: c.rank for r, c in classes.items()} == {(0, 0): 64, (0, 1): 64, (1, 0): 64, (1, 1): 48}
    assert geom.filters_kernel_condition  # the stride-blind condition says "enough"
    A = gradient_matrix(delta, geom).toarray()
    assert np.linalg.matrix_rank(A) == sum(c.rank for c in classes.values()) == 240


def test_forward_rows_close_the_residue_gap():
    geom = _stride2_geometry()
    rng = np.random.default_rng(2)
    delta = rng.standard_normal((12, geom.out_h, geom.out_w))
    weight = rng.uniform(-0.5, 0.5, (12, 2, 5, 5))
    live = np.ones(geom.forward_rows, dtype=bool)
    assert stacked_rank(delta, weight, geom, live) == (geom.unknowns, True)
    assert stacked_rank(delta, weight, geom, None) == (2 * 240, True)
    # Too big to factor densely: an upper bound, said so.
    rank, exact = stacked_rank(delta, weight, geom, live, max_dense=10)
    assert not exact and rank == min(geom.unknowns, 2 * 240 + geom.forward_rows)


def test_relu_networks_are_audited_on_several_probe_inputs():
    # Dead ReLU units remove rows, so the ranks depend on the input: the verdict is a vote over probes.
    report = audit("rconv-lenet", "mnist", probes=3)
    assert len(report.probe_verdicts) == 3 and report.verdict in report.probe_verdicts
    assert any("3 probe inputs" in reason for reason in report.reasons)
    relu_layers = [layer for layer in report.layers if layer.activation == "relu"]
    assert relu_layers and all(layer.forward_constraints < layer.filters * 7 * 7 for layer in relu_layers)
    # Without ReLU the ranks do not depend on the input: one probe.
    assert len(audit("lenet", "mnist", probes=3).probe_verdicts) == 1


def test_models_outside_the_family_and_batches_are_not_analytic():
    assert audit("resnet18", "cifar10").verdict == "none"
    batched = audit("lenet", "mnist", batch_size=4)
    assert batched.verdict == "none" and "mixture" in batched.verdict_text
    assert batched.layers[0].unknowns == 4 * 28 * 28


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--model", "no-such-model", "--dataset", "mnist"], "--model"),
        (["--model", "cnn6", "--dataset", "svhn"], "--dataset"),
        (["--model", "cnn6", "--dataset", "mnist", "--activation", "swish"], "--activation"),
        (["--model", "lenet", "--dataset", "mnist", "--image-size", "30"], "--image-size"),
        (["--model", "lenet", "--dataset", "mnist", "--batch-size", "0"], "--batch-size"),
        (["--model", "lenet", "--dataset", "mnist", "--probes", "0"], "--probes"),
    ],
)
def test_bad_input_is_one_line_naming_the_option(argv, option, capsys):
    assert main(["audit", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and option in err


def test_lenet_layer_two_is_flagged_stride_hidden_on_mnist(capsys):
    # DLG's LeNet, layer 2: 12 filters · 25 = 300 ≥ 14·14 = 196 pixels, so the pooled count says "enough"; yet with
    # stride 2 the odd/odd residue class is reached by 2×2 kernel offsets only: 12·4 = 48 rows for its 7·7 = 49 pixels.
    report = audit("lenet", "mnist")
    layers = {layer.layer: layer for layer in report.layers}
    second = layers["body.2"]
    assert second.pooled_condition and second.stride_hidden_deficiency and not second.gradient_full
    classes = {c.residue: c for c in second.residue_classes}
    assert {r: (c.rows, c.pixels) for r, c in classes.items()} == {
        (0, 0): (108, 49), (0, 1): (72, 49), (1, 0): (72, 49), (1, 1): (48, 49)
    }
    assert [r for r, c in classes.items() if not c.enough_rows] == [(1, 1)]
    assert classes[(1, 1)].rank == 48 and all(classes[r].full for r in [(0, 0), (0, 1), (1, 0)])
    # The pooled rank hides it: 3 full classes + 48 ⇒ 195 of 196 per channel.
    assert second.gradient_rank == 12 * (3 * 49 + 48)
    assert any("stride-hidden deficiency" in note and "48 rows for 49 pixels" in note for note in second.notes)
    # Layer 1 fails the pooled count outright (not hidden); layer 3 has stride 1 (one class, full).
    assert not layers["body.0"].pooled_condition and not layers["body.0"].stride_hidden_deficiency
    assert layers["body.4"].gradient_full and not layers["body.4"].stride_hidden_deficiency
    # The forward rows close the gap, so R-GAP is exact while R-CONV as published is not.
    assert second.deficiency == 0 and report.verdict == "rgap"
    assert any(reason.startswith("body.2") and "stride-hidden" in reason for reason in report.reasons)


def test_stride_hidden_flag_is_printed_and_written_to_json(tmp_path, capsys):
    out = tmp_path / "audit.json"
    assert main(["audit", "--model", "lenet", "--dataset", "mnist", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    flagged = [line for line in text.splitlines() if "STRIDE-HIDDEN" in line]
    assert len(flagged) == 1 and flagged[0].split()[0] == "body.2" and "1,1: 48/49, 48 rows ✗" in flagged[0]
    layers = {layer["layer"]: layer for layer in json.loads(out.read_text())["layers"]}
    assert layers["body.2"]["stride_hidden_deficiency"] and not layers["body.0"]["stride_hidden_deficiency"]
    odd = [c for c in layers["body.2"]["residue_classes"] if c["residue"] == [1, 1]]
    assert odd == [{"residue": [1, 1], "rows": 48, "pixels": 49, "rank": 48, "full": False, "enough_rows": False}]


def test_a_wide_enough_stride_two_layer_is_not_flagged():
    # 16 filters: the odd/odd class gets 16·4 = 64 rows for 8·8 pixels, so no class is short and nothing is hidden.
    conv = nn.Conv2d(2, 16, kernel_size=5, stride=2, padding=2)
    geom = ConvGeometry.from_module(conv, 16, 16)
    delta = np.random.default_rng(3).standard_normal((16, geom.out_h, geom.out_w))
    classes = gradient_ranks(delta, geom)
    assert all(c.enough_rows and c.full for c in classes)
