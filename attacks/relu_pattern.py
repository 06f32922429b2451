"""Repairing the live/dead pattern of a ReLU layer's output from the layer's own gradient constraints.

The analytic attacks read which ReLU units were live from an output recovered by the layer above; near-zero live
units and rank-deficient layers above make that reading wrong in places, and a wrong pattern spoils every layer
below. The gradient constraints are bilinear in (delta, input) and over-determined in each factor, so a pattern can
be checked against the observed gradient and corrected by alternating between the two factors
(:func:`repair_relu_pattern`). Used by the backward walk in :mod:`fedleak.attacks.conv_systems`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from fedleak.attacks.conv_constraints import conv_forward, gradient_matrix, gradient_rhs
from fedleak.attacks.conv_network import ConvGeometry
from fedleak.attacks.conv_solvers import solve_gradient_constraints, to_image


@dataclass
class PatternRepair:
    """Outcome of :func:`repair_relu_pattern` for one ReLU layer's output."""

    alive: np.ndarray  # the chosen live-unit mask (D×Ho×Wo)
    residual_before: float  # gradient-system residual with the pattern read from the recovered output
    residual_after: float  # the same with the chosen pattern
    flipped: int  # units whose live/dead verdict changed
    iterations: int

    def note(self) -> str:
        return (
            f"ReLU pattern repair: {self.flipped} units reclassified in {self.iterations} iterations, gradient "
            f"residual {self.residual_before:.1e} -> {self.residual_after:.1e}"
        )


#: A repaired pattern whose gradient residual falls below this is taken without trying further starts: exact patterns
#: leave float32 rounding (~1e-7 on ``rconv-lenet``), a single misread unit ≥ 1e-3.
CONSISTENT_RESIDUAL = 1e-5
#: The least-squares live fraction of a unit (``delta / upstream``) is 0 or 1 for the true pattern; between these
#: bounds it is too unclear to round, and the forward sign of the recomputed pre-activation decides.
UNCLEAR_RATIO = (0.25, 0.75)


def repair_relu_pattern(
    geom: ConvGeometry,
    upstream: np.ndarray,
    weight_grad: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    alive: np.ndarray,
    rcond: float = 1e-10,
    max_iterations: int = 20,
) -> PatternRepair:
    """Correct the live/dead pattern of a ReLU layer's output from the layer's own gradient constraints.

    The pattern decides ``delta = upstream · alive`` and thereby the whole layer below. It is read from an output
    recovered by the layer above, which may be wrong: a live unit near zero (tolerance) or, when the layer above is
    rank deficient, whole regions. The gradient constraints ``dL/dw = delta ⋆ x`` are bilinear in ``(delta, x)`` and
    over-determined in each factor, so alternate: the pattern gives ``x`` (least squares), ``x`` gives ``delta``
    (least squares, with the roles of the factors swapped), and ``delta / upstream`` rounds to a new pattern (unclear
    ratios take the sign of the recomputed pre-activation ``conv(x) + b``). A consistent pattern reproduces the
    observed gradient to its rounding; among the starts (the read pattern, everything alive) the pattern with the
    smallest gradient residual wins, and the read one is kept unless another does better.

    Args:
        upstream: ``dL/dy`` of the layer's output (D×Ho×Wo), known exactly from the layers above.
        alive: the pattern read from the recovered output.
    """
    B = gradient_rhs(weight_grad, geom)
    start = alive.astype(bool)
    best = PatternRepair(start, _pattern_residual(geom, upstream, start, B, rcond)[1], 0.0, 0, 0)
    best.residual_after = best.residual_before
    if best.residual_before <= CONSISTENT_RESIDUAL:
        return best
    for initial in (start, upstream != 0):
        pattern, residual, iterations = _alternate(
            geom, upstream, weight_grad, weight, bias, initial, B, rcond, max_iterations
        )
        if residual < best.residual_after:
            best = PatternRepair(pattern, best.residual_before, residual, int((pattern != start).sum()), iterations)
        if best.residual_after <= CONSISTENT_RESIDUAL:
            break
    return best


def _alternate(geom, upstream, weight_grad, weight, bias, pattern, B, rcond, max_iterations):
    """Alternate pattern → input → delta → pattern until the pattern repeats; the best pattern seen is returned."""
    best_pattern, best_residual = pattern, np.inf
    for iteration in range(1, max_iterations + 1):
        x, residual = _pattern_residual(geom, upstream, pattern, B, rcond)
        if residual < best_residual:
            best_pattern, best_residual = pattern, residual
        new = _round_pattern(geom, upstream, weight_grad, weight, bias, x, rcond)
        if residual <= CONSISTENT_RESIDUAL or np.array_equal(new, pattern):
            return best_pattern, best_residual, iteration
        pattern = new
    return best_pattern, best_residual, max_iterations


def _pattern_residual(geom, upstream, pattern, B, rcond) -> tuple[np.ndarray, float]:
    """The least-squares input for a pattern (C×H×W) and the relative residual of the gradient constraints."""
    solved = solve_gradient_constraints(gradient_matrix(upstream * pattern, geom), B, rcond=rcond, need_null=False)
    return to_image(solved.x, geom), solved.residual


def _round_pattern(geom, upstream, weight_grad, weight, bias, x, rcond) -> np.ndarray:
    """A new pattern from the least-squares delta for input ``x``, unclear units by the forward sign."""
    delta = delta_from_input(x, weight_grad, geom, rcond)
    known = upstream != 0
    ratio = np.where(known, delta / np.where(known, upstream, 1.0), 0.0)
    forward_alive = conv_forward(x, weight, bias, geom) > 0
    unclear = ~known | ((ratio > UNCLEAR_RATIO[0]) & (ratio < UNCLEAR_RATIO[1]))
    return np.where(unclear, forward_alive, ratio > 0.5)


def delta_from_input(x: np.ndarray, weight_grad: np.ndarray, geom: ConvGeometry, rcond: float = 1e-10) -> np.ndarray:
    """Least-squares ``delta`` (D×Ho×Wo) from the weight gradient and a known input: the gradient constraints read
    with the roles swapped, ``dL/dw[d] = patches(x) delta[d]`` with one row per (channel, kernel offset)."""
    C, K, s, p = geom.in_channels, geom.kernel, geom.stride, geom.padding
    padded = np.pad(np.asarray(x, dtype=np.float64), ((0, 0), (p, p), (p, p)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (K, K), axis=(1, 2))  # C×H'×W'×K×K
    windows = windows[:, ::s, ::s][:, : geom.out_h, : geom.out_w]
    patches = windows.transpose(0, 3, 4, 1, 2).reshape(C * K * K, geom.out_h * geom.out_w)
    rhs = np.asarray(weight_grad, dtype=np.float64).reshape(geom.out_channels, C * K * K).T
    delta, *_ = scipy.linalg.lstsq(patches, rhs, cond=rcond, lapack_driver="gelsd")
    return delta.T.reshape(geom.out_channels, geom.out_h, geom.out_w)
