"""Activations seen from their output: derivative and inverse, as the analytic attacks need them.

The analytic attacks (R-CONV, R-GAP, hybrid) recover a layer's *output* ``y = sigma(z)`` before its input. R-CONV's
observation (Eltaras et al. 2024, arXiv 2406.04227) is that ``sigma'(z)`` can be written in ``y`` even when ``sigma``
is not invertible (ReLU); R-GAP and the hybrid method also need ``z = sigma^{-1}(y)`` for the forward constraints.
Everything here works on float64 numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

#: Kinds understood by the analytic attacks.
KINDS = ("identity", "relu", "leaky_relu", "sigmoid", "tanh")


@dataclass(frozen=True)
class ActivationSpec:
    """An element-wise activation: its kind and, for LeakyReLU, the negative slope."""

    kind: str
    negative_slope: float = 0.0

    @property
    def invertible(self) -> bool:
        """Whether ``z`` can be recovered from ``y`` (ReLU loses every negative pre-activation)."""
        return self.kind != "relu"

    @classmethod
    def from_module(cls, module: nn.Module | None) -> ActivationSpec:
        """The spec of a torch activation module (``None`` means no activation)."""
        if module is None or isinstance(module, nn.Identity):
            return cls("identity")
        if isinstance(module, nn.LeakyReLU):
            return cls("leaky_relu", float(module.negative_slope))
        if isinstance(module, nn.ReLU):
            return cls("relu")
        if isinstance(module, nn.Sigmoid):
            return cls("sigmoid")
        if isinstance(module, nn.Tanh):
            return cls("tanh")
        raise ValueError(
            f"activation {type(module).__name__} is not supported by the analytic attacks; "
            f"supported: ReLU, LeakyReLU, Sigmoid, Tanh, Identity"
        )


def is_activation(module: nn.Module) -> bool:
    return isinstance(module, nn.ReLU | nn.LeakyReLU | nn.Sigmoid | nn.Tanh | nn.Identity)


def derivative_from_output(y: np.ndarray, spec: ActivationSpec, dead_tol: float = 1e-5) -> np.ndarray:
    """``sigma'(z)`` expressed in the output ``y``.

    Args:
        y: recovered activation outputs.
        spec: the activation.
        dead_tol: for ReLU, outputs with ``y <= dead_tol * max|y|`` count as dead. A dead unit's recovered output is
            zero only up to the rounding of the solves below it, so an exact zero test would call dead units alive.
    """
    y = np.asarray(y, dtype=np.float64)
    if spec.kind == "identity":
        return np.ones_like(y)
    if spec.kind == "leaky_relu":
        # LeakyReLU outputs are never exactly zero and a recovered output keeps its sign (each entry carries only its
        # own relative rounding), so the sign decides; a tolerance here misreads small positive outputs (seen on CNN6).
        return np.where(y > 0, 1.0, spec.negative_slope)
    if spec.kind == "relu":
        return np.where(y > dead_tol * float(np.abs(y).max(initial=0.0)), 1.0, 0.0)
    if spec.kind == "sigmoid":
        return y * (1.0 - y)
    if spec.kind == "tanh":
        return 1.0 - y * y
    raise ValueError(f"unknown activation kind {spec.kind!r}")


def inverse(y: np.ndarray, spec: ActivationSpec, clip: float = 1e-12) -> np.ndarray:
    """``z = sigma^{-1}(y)``; raises ValueError for ReLU, which is not invertible.

    Sigmoid and tanh outputs are clipped ``clip`` inside their open range, so a rounding error at saturation gives a
    large finite pre-activation instead of an infinity.
    """
    y = np.asarray(y, dtype=np.float64)
    if spec.kind == "identity":
        return y.copy()
    if spec.kind == "leaky_relu":
        if spec.negative_slope == 0:
            raise ValueError("LeakyReLU with slope 0 is a ReLU: not invertible")
        return np.where(y >= 0, y, y / spec.negative_slope)
    if spec.kind == "sigmoid":
        y = np.clip(y, clip, 1.0 - clip)
        return np.log(y) - np.log1p(-y)
    if spec.kind == "tanh":
        return np.arctanh(np.clip(y, -1.0 + clip, 1.0 - clip))
    if spec.kind == "relu":
        raise ValueError("ReLU is not invertible: its negative pre-activations are lost")
    raise ValueError(f"unknown activation kind {spec.kind!r}")
