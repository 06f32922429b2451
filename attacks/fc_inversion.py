"""Input of a fully connected layer from its gradients (shared by the linear, R-CONV, R-GAP and hybrid attacks).

For one sample and a layer ``z = W x + b``: ``dL/dW = delta x^T`` and ``dL/db = delta``, so every row j with
``delta_j != 0`` gives ``x = (dL/dW)_j / (dL/db)_j`` (Geiping et al. 2020, arXiv 2003.14053, Prop. D.1;
Phong et al. 2017 for linear models). The least-squares form over all rows,
``x = sum_j g_j G_j / sum_j g_j^2``, uses every row and is exact for one sample. With B > 1 samples the
gradient is a mixture ``sum_b delta_b x_b^T / B`` and the ratio returns a delta-weighted mixture of inputs.
Computed in float64.
"""

from __future__ import annotations

import torch


def invert_fc(weight_grad: torch.Tensor, bias_grad: torch.Tensor) -> torch.Tensor:
    """Least-squares FC input from (out × in) weight gradient and (out) bias gradient, float64."""
    g = bias_grad.detach().to(torch.float64).reshape(-1)
    G = weight_grad.detach().to(torch.float64).reshape(g.numel(), -1)
    denom = (g * g).sum()
    if denom == 0:
        raise ValueError("bias gradient is zero: the FC input cannot be recovered")
    return (g @ G) / denom


def invert_fc_rows(weight_grad: torch.Tensor, bias_grad: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """One candidate input per row with a non-zero bias gradient: (rows × in), float64.

    With one sample every candidate is the same input; with several samples each row is a different mixture
    (the "1/alpha" closed form of the linear attack returns these).
    """
    g = bias_grad.detach().to(torch.float64).reshape(-1)
    G = weight_grad.detach().to(torch.float64).reshape(g.numel(), -1)
    rows = g.abs() > eps
    return G[rows] / g[rows, None]


def fc_input_gradient(weight: torch.Tensor, bias_grad: torch.Tensor) -> torch.Tensor:
    """dL/dx of the FC input for one sample: ``W^T (dL/db)``, float64."""
    return weight.detach().to(torch.float64).T @ bias_grad.detach().to(torch.float64).reshape(-1)
