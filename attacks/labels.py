"""Label inference from the last fully connected layer's gradients.

With softmax cross-entropy (mean over a batch of B) and logits ``z = W h + b``:

    dL/db_j = (1/B) Σ_b (p_bj − 1[y_b = j])          dL/dW_j = (1/B) Σ_b (p_bj − 1[y_b = j]) h_b

* iDLG (Zhao, Mopuri, Bilen 2020, arXiv 2001.02610): at B = 1 only the true class has a negative factor
  ``p_y − 1``; when the FC input is non-negative (sigmoid/ReLU before the FC) the true row's weight gradient is
  the only one with a negative sum, so ``y = argmin_j Σ_k (dL/dW)_jk``.
* Bias sign (as in breaching's analytic label rule): at B = 1 the bias gradient is negative at the true class only,
  whatever the activation, so ``y = argmin_j dL/db_j``.
* Batch label counts (B > 1), after the LLG idea (Wainakh et al. 2022, arXiv 2111.04706): summing over the
  batch, ``dL/db_j = p̄_j − n_j / B`` with ``p̄_j`` the batch-mean softmax and ``n_j`` the count of class j, so
  ``n_j = B (p̄_j − dL/db_j)``. ``p̄`` is unknown; we estimate it as the model's mean softmax on random
  uniform images (close to the truth for an untrained model, whose predictions hardly depend on the input),
  or as uniform ``1/C`` when no model is given. Every class with a negative bias gradient is certainly present
  (``p̄_j ≥ 0`` forces ``n_j > 0``); the remaining slots are filled by the largest estimated counts.
  Labels are returned sorted: the order of a batch is not recoverable from a summed gradient.

Accuracy degrades first for B > 1 with repeated labels and for trained models; report it separately.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

LabelMethod = Literal["auto", "idlg", "bias_sign", "counts"]


@dataclass
class LabelInference:
    """Labels the attack will use, how they were obtained, and what the rule saw."""

    labels: torch.Tensor
    method: str
    known: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    def diagnostics(self) -> dict[str, Any]:
        return {"labels_method": self.method, "labels_known": self.known, **self.details}


def last_linear_gradients(
    gradients: dict[str, torch.Tensor], num_classes: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight gradient C×F, bias gradient C or None) of the last Linear layer producing ``num_classes`` logits.

    The layer is found as the last 2-D entry with ``num_classes`` rows, in the model's parameter order.
    """
    names = list(gradients)
    for name in reversed(names):
        grad = gradients[name]
        if grad.dim() == 2 and grad.shape[0] == num_classes and name.endswith("weight"):
            bias = gradients.get(name[: -len("weight")] + "bias")
            return grad, bias
    raise ValueError(f"no fully connected layer with {num_classes} outputs found among {names}")


def idlg_label(weight_grad: torch.Tensor) -> int:
    """iDLG: the row of the last layer's weight gradient with the smallest sum (B = 1, non-negative FC input)."""
    return int(weight_grad.detach().to(torch.float64).sum(dim=1).argmin())


def bias_sign_label(bias_grad: torch.Tensor) -> int:
    """The class whose bias gradient is the (only) negative entry at B = 1."""
    return int(bias_grad.detach().to(torch.float64).reshape(-1).argmin())


def mean_softmax_estimate(model: nn.Module, image_shape: tuple[int, ...], samples: int = 64,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """The model's mean softmax on uniform random images: the estimate of p̄ used by :func:`label_counts`."""
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    param = next(model.parameters())
    images = torch.rand((samples, *image_shape), generator=generator).to(param.device, param.dtype)
    with torch.no_grad():
        return torch.softmax(model(images), dim=-1).mean(dim=0).to(torch.float64).cpu()


def label_counts(bias_grad: torch.Tensor, batch_size: int, mean_softmax: torch.Tensor | None = None) -> torch.Tensor:
    """Estimated count per class (C,), summing to ``batch_size``, from ``dL/db_j = p̄_j − n_j / B``."""
    g = bias_grad.detach().to(torch.float64).reshape(-1).cpu()
    num_classes = g.numel()
    p_mean = mean_softmax.to(torch.float64).reshape(-1).cpu() if mean_softmax is not None else None
    if p_mean is None:
        p_mean = torch.full((num_classes,), 1.0 / num_classes, dtype=torch.float64)
    estimate = (batch_size * (p_mean - g)).clamp(min=0)
    counts = torch.zeros(num_classes, dtype=torch.long)
    # Certainly present: a negative bias gradient can only come from a class in the batch.
    present = torch.nonzero(g < 0).reshape(-1)
    present = present[torch.argsort(g[present])][:batch_size]
    counts[present] = 1
    # Fill the remaining slots one at a time where the estimate exceeds what is already assigned the most.
    for _ in range(batch_size - int(counts.sum())):
        counts[int((estimate - counts).argmax())] += 1
    return counts


def counts_to_labels(counts: torch.Tensor) -> torch.Tensor:
    """Sorted label list from per-class counts."""
    return torch.repeat_interleave(torch.arange(counts.numel()), counts.to(torch.long))


def infer_labels(
    gradients: dict[str, torch.Tensor],
    num_classes: int,
    batch_size: int,
    method: LabelMethod = "auto",
    known: torch.Tensor | None = None,
    model: nn.Module | None = None,
    image_shape: tuple[int, ...] | None = None,
) -> LabelInference:
    """Labels for a batch: the granted ones if any, else inferred from the last layer's gradients.

    ``auto`` uses the bias sign at B = 1 when the layer has a bias, iDLG's row sums otherwise, and label counts
    for B > 1. ``model`` and ``image_shape`` (C, H, W) enable the p̄ estimate for counts.
    """
    if known is not None:
        return LabelInference(known.detach().reshape(-1).to(torch.long).cpu(), "granted", known=True)
    weight_grad, bias_grad = last_linear_gradients(gradients, num_classes)
    if method == "auto":
        if batch_size > 1:
            method = "counts"
        else:
            method = "bias_sign" if bias_grad is not None else "idlg"
    if method in ("bias_sign", "counts") and bias_grad is None:
        raise ValueError(f"label method {method!r} needs a bias on the last layer; use 'idlg'")
    if method == "idlg":
        if batch_size != 1:
            raise ValueError("the iDLG label rule holds for one image only; use 'counts' for batches")
        return LabelInference(torch.tensor([idlg_label(weight_grad)]), "idlg")
    if method == "bias_sign":
        if batch_size != 1:
            raise ValueError("the bias-sign label rule holds for one image only; use 'counts' for batches")
        return LabelInference(torch.tensor([bias_sign_label(bias_grad)]), "bias_sign")
    if method != "counts":
        raise ValueError(f"unknown label method {method!r}; choose auto, idlg, bias_sign or counts")
    p_mean = None
    if model is not None and image_shape is not None:
        p_mean = mean_softmax_estimate(model, image_shape)
    counts = label_counts(bias_grad, batch_size, p_mean)
    estimate = "model on random images" if p_mean is not None else "uniform 1/C"
    return LabelInference(counts_to_labels(counts), "counts", details={"softmax_mean_estimate": estimate})
