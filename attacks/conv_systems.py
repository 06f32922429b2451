"""The backward walk of the analytic attacks: FC layer first, then every conv layer from the last to the first.

The FC layer's input follows from its weight and bias gradients; each conv layer's input is then solved from its
constraints (:func:`~fedleak.attacks.conv_solvers.solve_layer`) and becomes the output of the layer before it, until
the network input is reached. Shared by R-CONV, R-GAP and the hybrid attack, which differ in which constraint families
each layer uses and in an optional per-layer refinement.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from fedleak.attacks.activations import derivative_from_output, inverse
from fedleak.attacks.conv_constraints import input_gradient
from fedleak.attacks.conv_network import ConvLayer, Network, parse_network
from fedleak.attacks.conv_solvers import LayerReport, relative_residual, solve_layer
from fedleak.attacks.cpu_kernels import torch_threads
from fedleak.attacks.fc_inversion import fc_input_gradient, invert_fc
from fedleak.attacks.relu_pattern import repair_relu_pattern
from fedleak.types import Observation

#: (layer, is_first_layer) -> (use gradient constraints, use forward constraints)
LayerPolicy = Callable[[ConvLayer, bool], tuple[bool, bool]]


@dataclass
class LayerSystem:
    """The data of one layer's linear system, handed to a refiner (the hybrid correction)."""

    delta: np.ndarray  # dL/dz, D×Ho×Wo
    weight_grad: np.ndarray  # observed dL/dw, D×C×K×K
    weight: np.ndarray  # D×C×K×K
    z: np.ndarray | None  # pre-activation minus bias (NaN where unknown); None without forward constraints
    report: LayerReport


#: (layer index, layer, least-squares input C×H×W, its system) -> corrected input (the hybrid attack's refinement)
Refiner = Callable[[int, ConvLayer, np.ndarray, LayerSystem], np.ndarray]


@dataclass
class WalkResult:
    image: np.ndarray  # C×H×W, float64
    reports: list[LayerReport]
    fc_input: np.ndarray
    layer_inputs: list[np.ndarray]  # recovered input of every conv layer, first layer first
    bias_checks: dict[str, float]  # relative mismatch of sum(delta) against the observed bias gradient


@contextlib.contextmanager
def blas_threads(limit: int | None):
    """Limit BLAS (when threadpoolctl is installed) and torch intra-op threads for the small solves of the walk.

    The per-layer systems and convolutions are small; on a busy 2-core machine a 400×256 SVD took 1.0 s with two
    OpenBLAS threads and 0.03 s with one, and a float64 32×32 convolution 12.5 ms with two torch threads and 0.04 ms
    with one (spinning threads compete with other processes), so one thread is the default.
    """
    if limit is None:
        yield
        return
    with threadpool_limits(limits=limit, user_api="blas"), torch_threads(limit):
        yield


def invert_network(
    net: Network,
    weights: dict[str, np.ndarray],
    grads: dict[str, np.ndarray],
    policy: LayerPolicy,
    rcond: float = 1e-10,
    dead_tol: float = 1e-5,
    nullspace_limit: int = 1500,
    refine: Refiner | None = None,
    threads: int | None = 1,
    relu_repair: bool = True,
) -> WalkResult:
    """Recover the network input layer by layer from one sample's gradients (float64 throughout).

    Args:
        net: the parsed network.
        weights / grads: float64 arrays keyed like ``model.state_dict()`` / the observed update.
        policy: which constraint families to use for each conv layer.
        rcond, dead_tol, nullspace_limit: see :func:`solve_layer` and
            :func:`~fedleak.attacks.activations.derivative_from_output`.
        refine: optional correction of each layer's least-squares input before it is passed on.
        threads: BLAS threads for the dense solves (None leaves the library default), see :func:`blas_threads`.
        relu_repair: check and correct the live/dead pattern of ReLU outputs recovered by a solve
            (:func:`~fedleak.attacks.relu_pattern.repair_relu_pattern`).
    """
    with blas_threads(threads):
        return _walk(net, weights, grads, policy, rcond, dead_tol, nullspace_limit, refine, relu_repair)


def invert_observation(observation: Observation, policy: LayerPolicy, **solver: Any) -> tuple[WalkResult, Network]:
    """Parse the observed model and walk back from its update: the whole of R-CONV and R-GAP but the policy.

    ``solver`` holds :func:`invert_network`'s keyword settings (rcond, dead_tol, nullspace_limit, …).
    """
    spec = observation.model
    threads = solver.pop("threads", 1)
    # Tracing the model is a forward pass too, so it runs under the same thread limit as the solves.
    with blas_threads(threads):
        model = observation.build_model()
        net = parse_network(model, (spec.in_channels, spec.image_size, spec.image_size))
        weights, grads = numpy_params(model.state_dict()), numpy_params(observation.gradient())
        return invert_network(net, weights, grads, policy, threads=None, **solver), net


def _walk(
    net: Network,
    weights: dict[str, np.ndarray],
    grads: dict[str, np.ndarray],
    policy: LayerPolicy,
    rcond: float,
    dead_tol: float,
    nullspace_limit: int,
    refine: Refiner | None,
    relu_repair: bool,
) -> WalkResult:
    fc_w, fc_gw, fc_gb = weights[f"{net.fc_name}.weight"], grads[f"{net.fc_name}.weight"], grads[f"{net.fc_name}.bias"]
    x_next = invert_fc(torch.as_tensor(fc_gw), torch.as_tensor(fc_gb)).numpy()
    dx_next = fc_input_gradient(torch.as_tensor(fc_w), torch.as_tensor(fc_gb)).numpy()
    fc_input = x_next.copy()
    steps = _LayerSteps(weights, grads, policy, rcond, dead_tol, nullspace_limit, refine, relu_repair)
    reports: list[LayerReport] = []
    inputs: list[np.ndarray] = []
    bias_checks: dict[str, float] = {}
    for index in range(len(net.convs) - 1, -1, -1):
        # The FC input comes from ratios of gradient entries: a dead unit's row is exactly zero there, so no
        # tolerance is needed; deeper outputs come from solves and carry their rounding.
        tol = 0.0 if index == len(net.convs) - 1 else dead_tol
        x, dx_next, report, bias_check = steps.invert(index, net.convs[index], x_next, dx_next, tol)
        if bias_check is not None:
            bias_checks[net.convs[index].name] = bias_check
        reports.append(report)
        inputs.append(x)
        x_next = x.reshape(-1)
    reports.reverse()
    inputs.reverse()
    return WalkResult(x_next.reshape(net.input_shape), reports, fc_input, inputs, bias_checks)


@dataclass
class _LayerSteps:
    """One conv layer of the backward walk: error signal through the activation, forward right-hand side, solve."""

    weights: dict[str, np.ndarray]
    grads: dict[str, np.ndarray]
    policy: LayerPolicy
    rcond: float
    dead_tol: float
    nullspace_limit: int
    refine: Refiner | None
    relu_repair: bool

    def invert(
        self, index: int, layer: ConvLayer, x_next: np.ndarray, dx_next: np.ndarray, tol: float
    ) -> tuple[np.ndarray, np.ndarray, LayerReport, float | None]:
        """The layer's input from its output ``x_next`` and the error ``dx_next`` on that output; returns (input,
        error on the input, report, relative mismatch of ``sum(delta)`` against the observed bias gradient)."""
        geom = layer.geometry
        y = x_next.reshape(geom.out_channels, geom.out_h, geom.out_w)
        weight, weight_grad = self.weights[f"{layer.name}.weight"], self.grads[f"{layer.name}.weight"]
        bias = self.weights.get(f"{layer.name}.bias") if layer.has_bias else None
        delta, slope, repair = self._error_signal(layer, y, dx_next.reshape(y.shape), bias, tol)
        bias_check = None
        if bias is not None:
            observed = self.grads[f"{layer.name}.bias"]
            bias_check = relative_residual(delta.sum(axis=(1, 2)) - observed, observed)
        use_gradient, use_forward = self.policy(layer, index == 0)
        z = _forward_rhs(layer, y, slope, bias) if use_forward else None
        x, report = solve_layer(
            geom, layer.name, delta, weight_grad, weight=weight, z=z, use_gradient=use_gradient,
            use_forward=use_forward, rcond=self.rcond, nullspace_limit=self.nullspace_limit,
        )
        if repair is not None and repair.flipped:
            report.notes.append(repair.note())
        if self.refine is not None:
            x = self.refine(index, layer, x, LayerSystem(delta, weight_grad, weight, z, report))
        return x, input_gradient(delta, weight, geom).reshape(-1), report, bias_check

    def _error_signal(self, layer: ConvLayer, y: np.ndarray, upstream: np.ndarray, bias: np.ndarray | None,
                      tol: float) -> tuple[np.ndarray, np.ndarray, Any]:
        """``delta = dL/dz``: the upstream error times the activation's derivative written in the output, with the
        ReLU live/dead pattern checked against the layer's own gradient constraints where that is well posed."""
        slope = derivative_from_output(y, layer.activation, dead_tol=tol)
        repair = None
        if self.relu_repair and tol > 0 and _pattern_repairable(layer):
            weight = self.weights[f"{layer.name}.weight"]
            repair = repair_relu_pattern(layer.geometry, upstream, self.grads[f"{layer.name}.weight"], weight, bias,
                                         slope > 0, self.rcond)
            slope = repair.alive.astype(np.float64)
        return upstream * slope, slope, repair


def _forward_rhs(layer: ConvLayer, y: np.ndarray, slope: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """``z − b`` for the forward constraints: the inverse activation, or after a ReLU the output of live units (a dead
    unit's pre-activation is unknown: NaN, its row is dropped)."""
    z = inverse(y, layer.activation) if layer.activation.invertible else np.where(slope > 0, y, np.nan)
    return z - bias[:, None, None] if bias is not None else z


def _pattern_repairable(layer: ConvLayer) -> bool:
    """A ReLU layer whose gradient constraints are over-determined both in the input and in ``delta``, so that a
    wrong live/dead pattern shows as a residual and the alternation in ``repair_relu_pattern`` is well posed."""
    geom = layer.geometry
    swapped_rows = geom.in_channels * geom.kernel * geom.kernel
    return layer.activation.kind == "relu" and geom.filters_kernel_condition and swapped_rows >= geom.out_h * geom.out_w


def numpy_params(tensors: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """float64 numpy copies of a state or gradient dict."""
    return {k: v.detach().cpu().to(torch.float64).numpy() for k, v in tensors.items()}


def copa_index(deficiencies: list[int | None]) -> int | None:
    """The hybrid paper's security index from per-conv-layer rank deficiencies (first layer first).

    ``COPA = sum_j round(-d_j (M - j - 1) / (M - 1))`` with ``M`` = number of modules (conv layers + the FC layer):
    deficiencies near the input weigh most. 0 means every layer is uniquely solvable; more negative is more private.
    None when a deficiency is unknown.
    """
    if any(d is None for d in deficiencies):
        return None
    modules = len(deficiencies) + 1
    return int(sum(round(-d * (modules - j - 1) / (modules - 1)) for j, d in enumerate(deficiencies)))
