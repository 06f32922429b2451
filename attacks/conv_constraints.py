"""The two families of linear equations in the input of one conv layer, for one sample.

For a conv layer with input ``x`` (C×H×W), weights ``w`` (D×C×K×K), stride ``s``, zero padding ``p``, pre-activation
``z`` (D×Ho×Wo) and back-propagated error ``delta = dL/dz``, two families of linear equations in ``x`` exist (R-GAP,
Zhu & Blaschko 2021, arXiv 2010.07733; R-CONV, Eltaras et al. 2024, arXiv 2406.04227):

* gradient constraints ``dL/dw[d, c, u, v] = sum_{i,j} delta[d, i, j] * x[c, s*i + u - p, s*j + v - p]``: one row per
  (filter d, kernel offset u, v), one column per input pixel. The matrix ``A(delta)`` is the same for every input
  channel, so the system is ``A X = B`` with one right-hand side per channel (``B[(d,u,v), c] = dL/dw[d,c,u,v]``);
* forward constraints ``W x = z - b``: the convolution as a sparse matrix (rows = output units, columns = C·H·W), usable
  when the activation after the layer is invertible — and, for ReLU, on the rows of live units (``z = y`` there).

Zero-padding entries are known zeros and simply drop out of both systems. (R-GAP writes the systems on the padded
input with extra identity rows pinning the padding; that system has the same rank deficiency.)

Also here: the layer's convolution and its input gradient in float64, which the backward walk needs between layers.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from fedleak.attacks.conv_network import ConvGeometry


def gradient_matrix(delta: np.ndarray, geom: ConvGeometry) -> sp.csr_matrix:
    """``A(delta)``: rows (filter d, offset u, v), columns input pixels (h, w) of one channel."""
    D, K, s, p = geom.out_channels, geom.kernel, geom.stride, geom.padding
    d, u, v, i, j = np.meshgrid(
        np.arange(D), np.arange(K), np.arange(K), np.arange(geom.out_h), np.arange(geom.out_w), indexing="ij"
    )
    h, w = s * i + u - p, s * j + v - p
    inside = (h >= 0) & (h < geom.in_h) & (w >= 0) & (w < geom.in_w)
    rows = ((d * K + u) * K + v)[inside]
    cols = (h * geom.in_w + w)[inside]
    values = np.asarray(delta, dtype=np.float64).reshape(D, geom.out_h, geom.out_w)[d[inside], i[inside], j[inside]]
    return sp.csr_matrix((values, (rows, cols)), shape=(geom.gradient_rows, geom.pixels))


def gradient_rhs(weight_grad: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """``B``: one column per input channel, rows ordered like :func:`gradient_matrix`."""
    g = np.asarray(weight_grad, dtype=np.float64).reshape(geom.out_channels, geom.in_channels, -1)
    return g.transpose(0, 2, 1).reshape(geom.gradient_rows, geom.in_channels)


def forward_matrix(weight: np.ndarray, geom: ConvGeometry) -> sp.csr_matrix:
    """The convolution as a sparse matrix: rows (d, i, j), columns (c, h, w); padding entries dropped."""
    D, C, K, s, p = geom.out_channels, geom.in_channels, geom.kernel, geom.stride, geom.padding
    d, i, j, c, u, v = np.meshgrid(
        np.arange(D),
        np.arange(geom.out_h),
        np.arange(geom.out_w),
        np.arange(C),
        np.arange(K),
        np.arange(K),
        indexing="ij",
    )
    h, w = s * i + u - p, s * j + v - p
    inside = (h >= 0) & (h < geom.in_h) & (w >= 0) & (w < geom.in_w)
    rows = ((d * geom.out_h + i) * geom.out_w + j)[inside]
    cols = ((c * geom.in_h + h) * geom.in_w + w)[inside]
    values = np.asarray(weight, dtype=np.float64)[d[inside], c[inside], u[inside], v[inside]]
    return sp.csr_matrix((values, (rows, cols)), shape=(geom.forward_rows, geom.unknowns))


def input_gradient(delta: np.ndarray, weight: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """``dL/dx`` of the layer input (C×H×W) from ``delta = dL/dz`` (a transposed convolution), float64."""
    grad = torch.nn.grad.conv2d_input(
        (1, geom.in_channels, geom.in_h, geom.in_w),
        torch.as_tensor(np.asarray(weight, dtype=np.float64)),
        torch.as_tensor(np.asarray(delta, dtype=np.float64)).reshape(1, geom.out_channels, geom.out_h, geom.out_w),
        stride=geom.stride,
        padding=geom.padding,
    )
    return grad[0].numpy()


def conv_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, geom: ConvGeometry) -> np.ndarray:
    """The layer's pre-activation for input ``x`` (C×H×W), float64."""
    out = torch.nn.functional.conv2d(
        torch.as_tensor(np.asarray(x, dtype=np.float64)).reshape(1, geom.in_channels, geom.in_h, geom.in_w),
        torch.as_tensor(np.asarray(weight, dtype=np.float64)),
        None if bias is None else torch.as_tensor(np.asarray(bias, dtype=np.float64)),
        stride=geom.stride,
        padding=geom.padding,
    )
    return out[0].numpy()
