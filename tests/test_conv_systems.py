"""Oracle tests of the conv-layer linear systems shared by R-CONV, R-GAP and the hybrid attack (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fedleak.attacks.activations import ActivationSpec, derivative_from_output, inverse
from fedleak.attacks.conv_constraints import forward_matrix, gradient_matrix, gradient_rhs, input_gradient
from fedleak.attacks.conv_network import ConvGeometry, parse_network
from fedleak.attacks.conv_solvers import solve_layer
from fedleak.attacks.conv_systems import copa_index
from fedleak.attacks.relu_pattern import delta_from_input, repair_relu_pattern

LAYERS = [  # (in, out, kernel, stride, padding, size)
    (3, 12, 5, 2, 2, 16),
    (4, 6, 3, 1, 1, 9),
    (2, 5, 4, 2, 0, 11),
]


def _layer(cin, cout, k, s, p, size, seed=0):
    gen = torch.Generator().manual_seed(seed)
    conv = nn.Conv2d(cin, cout, k, s, p).double()
    with torch.no_grad():
        conv.weight.copy_(torch.rand(conv.weight.shape, generator=gen, dtype=torch.float64) - 0.5)
    x = torch.rand(1, cin, size, size, generator=gen, dtype=torch.float64, requires_grad=True)
    z = conv(x)
    delta = torch.randn(z.shape, generator=gen, dtype=torch.float64)
    z.backward(delta)
    geom = ConvGeometry.from_module(conv, size, size)
    return conv, x, z, delta, geom


@pytest.mark.parametrize("spec", LAYERS)
def test_systems_reproduce_the_layer(spec):
    conv, x, z, delta, geom = _layer(*spec)
    x_np = x.detach()[0].numpy()
    # Gradient constraints: A(delta) applied to every channel gives the observed weight gradient.
    A = gradient_matrix(delta[0].numpy(), geom)
    B = gradient_rhs(conv.weight.grad.numpy(), geom)
    np.testing.assert_allclose(A @ x_np.reshape(geom.in_channels, -1).T, B, atol=1e-12)
    # Forward constraints: the sparse matrix is the convolution without bias.
    W = forward_matrix(conv.weight.detach().numpy(), geom)
    expected = (z - conv.bias[:, None, None]).detach().numpy().reshape(-1)
    np.testing.assert_allclose(W @ x_np.reshape(-1), expected, atol=1e-12)
    # Back-propagation to the input.
    np.testing.assert_allclose(input_gradient(delta[0].numpy(), conv.weight.detach().numpy(), geom),
                               x.grad[0].numpy(), atol=1e-12)


def test_gradient_constraints_alone_recover_the_input_exactly():
    conv, x, _, delta, geom = _layer(4, 6, 3, 1, 1, 7)  # 6·9 = 54 ≥ 49 rows per channel
    assert geom.filters_kernel_condition
    rec, report = solve_layer(geom, "l", delta[0].numpy(), conv.weight.grad.numpy())
    assert report.method == "gradient" and report.deficiency == 0 and report.rank == geom.unknowns
    np.testing.assert_allclose(rec, x.detach()[0].numpy(), atol=1e-9)


def test_forward_constraints_fill_the_gradient_null_space():
    conv, x, z, delta, geom = _layer(3, 12, 5, 2, 2, 16)  # stride 2: odd-odd pixels get 48 rows for 64 unknowns
    zb = (z - conv.bias[:, None, None]).detach()[0].numpy()
    rec, report = solve_layer(geom, "l", delta[0].numpy(), conv.weight.grad.numpy(),
                              weight=conv.weight.detach().numpy(), z=zb)
    assert report.method == "stacked-nullspace" and report.deficiency == 0 and report.deficiency_exact
    assert report.gradient_rank_per_channel < geom.pixels
    np.testing.assert_allclose(rec, x.detach()[0].numpy(), atol=1e-9)


def test_big_null_space_uses_the_sparse_stacked_solve():
    conv, x, z, delta, geom = _layer(3, 12, 5, 2, 2, 16)
    zb = (z - conv.bias[:, None, None]).detach()[0].numpy()
    rec, report = solve_layer(geom, "l", delta[0].numpy(), conv.weight.grad.numpy(),
                              weight=conv.weight.detach().numpy(), z=zb, nullspace_limit=10)
    assert report.method == "stacked-sparse" and report.deficiency == 0
    np.testing.assert_allclose(rec, x.detach()[0].numpy(), atol=1e-6)


def test_under_determined_layer_reports_its_deficiency():
    conv, x, _, delta, geom = _layer(2, 1, 3, 1, 0, 8)  # 1 filter · 9 rows < 64 pixels
    assert not geom.filters_kernel_condition
    _, report = solve_layer(geom, "l", delta[0].numpy(), conv.weight.grad.numpy())
    assert report.method == "gradient-minnorm"
    assert report.deficiency == geom.unknowns - report.rank >= geom.unknowns - 2 * 9


@pytest.mark.parametrize(
    "module, spec",
    [
        (nn.Sigmoid(), ActivationSpec("sigmoid")),
        (nn.Tanh(), ActivationSpec("tanh")),
        (nn.LeakyReLU(0.2), ActivationSpec("leaky_relu", 0.2)),
        (nn.ReLU(), ActivationSpec("relu")),
        (nn.Identity(), ActivationSpec("identity")),
    ],
)
def test_activation_derivative_and_inverse_from_the_output(module, spec):
    z = torch.linspace(-3, 3, 40, dtype=torch.float64, requires_grad=True)  # no exact kink at 0
    y = module(z)
    (slope,) = torch.autograd.grad(y.sum(), z)
    assert ActivationSpec.from_module(module) == spec
    np.testing.assert_allclose(derivative_from_output(y.detach().numpy(), spec), slope.numpy(), atol=1e-12)
    if spec.invertible:
        np.testing.assert_allclose(inverse(y.detach().numpy(), spec), z.detach().numpy(), atol=1e-9)
    else:
        with pytest.raises(ValueError, match="not invertible"):
            inverse(y.detach().numpy(), spec)


def test_parse_network_reads_layers_and_refuses_other_structures():
    good = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    net = parse_network(good, (1, 8, 8))
    assert [c.activation.kind for c in net.convs] == ["tanh"] and net.fc_name == "3"
    pooled = nn.Sequential(nn.Conv2d(1, 4, 3), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 10))
    with pytest.raises(ValueError, match="MaxPool2d"):
        parse_network(pooled, (1, 8, 8))
    no_bias = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(144, 10, bias=False))
    with pytest.raises(ValueError, match="no bias"):
        parse_network(no_bias, (1, 8, 8))


def test_copa_index_weighs_deficiencies_near_the_input_most():
    # Three conv layers + FC: weights 1, 2/3, 1/3.
    assert copa_index([0, 0, 0]) == 0
    assert copa_index([3, 0, 0]) == -3
    assert copa_index([0, 0, 3]) == -1
    assert copa_index([0, None, 0]) is None


def test_unknown_pre_activations_drop_their_forward_rows():
    # After a ReLU only live units give forward rows: z is NaN elsewhere and those rows are dropped.
    conv, x, z, delta, geom = _layer(3, 12, 5, 2, 2, 16)
    zb = (z - conv.bias[:, None, None]).detach()[0].numpy()
    zb_partial = np.where(zb + conv.bias.detach().numpy()[:, None, None] > 0, zb, np.nan)
    rec, report = solve_layer(geom, "l", delta[0].numpy(), conv.weight.grad.numpy(),
                              weight=conv.weight.detach().numpy(), z=zb_partial)
    assert report.forward_rows == int(np.isfinite(zb_partial).sum()) < geom.forward_rows
    assert report.deficiency == 0
    np.testing.assert_allclose(rec, x.detach()[0].numpy(), atol=1e-9)


def _relu_layer(seed=0):
    """A stride-1 layer whose output goes through a ReLU, with an exact upstream gradient: the pattern test bed."""
    # Over-determined in both factors like rconv-lenet's ReLU layers: 6·25 = 150 rows for 36 pixels, 4·25 = 100 for 36
    # outputs. (With 3×3 kernels and barely more rows than unknowns a wrong pattern can stay consistent.)
    conv, x, z, _, geom = _layer(4, 6, 5, 1, 2, 6, seed=seed)
    alive = (z > 0).detach()[0].numpy()
    upstream = torch.randn(z.shape, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)[0]
    delta = upstream.numpy() * alive
    weight_grad = torch.nn.grad.conv2d_weight(x.detach(), conv.weight.shape, torch.as_tensor(delta)[None], padding=2)
    return conv, x.detach()[0].numpy(), geom, alive, upstream.numpy(), delta, weight_grad.numpy()


def test_delta_follows_from_the_weight_gradient_and_a_known_input():
    _, x, geom, _, _, delta, weight_grad = _relu_layer()
    np.testing.assert_allclose(delta_from_input(x, weight_grad, geom), delta, atol=1e-10)


def test_pattern_repair_corrects_misread_units_and_keeps_a_right_pattern():
    conv, x, geom, alive, upstream, _, weight_grad = _relu_layer()
    w, b = conv.weight.detach().numpy(), conv.bias.detach().numpy()
    kept = repair_relu_pattern(geom, upstream, weight_grad, w, b, alive)
    assert kept.flipped == 0 and kept.residual_before < 1e-10
    misread = alive.copy()
    misread.reshape(-1)[:6] = ~misread.reshape(-1)[:6]  # six units read wrong, as below a deficient layer
    repaired = repair_relu_pattern(geom, upstream, weight_grad, w, b, misread)
    assert repaired.residual_before > 1e-3  # a wrong pattern shows in the residual of the over-determined system
    np.testing.assert_array_equal(repaired.alive, alive)
    assert repaired.flipped == 6 and repaired.residual_after < 1e-10
