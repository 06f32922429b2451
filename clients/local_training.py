"""What a client computes on its batch, in plain torch (no Flower), so tests can call it directly.

FedSGD clients send the gradient of the shared client loss on one batch; FedAvg clients run K plain SGD steps on
that batch and send their new weights. Both use :mod:`fedleak.training`, the same code the attacker simulates.
"""

from __future__ import annotations

import torch
from torch import nn

from fedleak.training import batch_gradient, client_loss, local_steps_update
from fedleak.types import UpdateKind


def compute_update(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, kind: UpdateKind, local_steps: int, lr: float
) -> tuple[dict[str, torch.Tensor], float]:
    """The client's update and its loss on the batch before training.

    Args:
        model: the global model, already loaded with the round's weights (left unchanged).
        images: the batch, B×C×H×W in [0, 1].
        labels: class indices, int64.
        kind: ``gradient`` (one-batch gradient, keyed by parameter) or ``local_steps`` (the full state dict after
            ``local_steps`` SGD steps: parameters trained, buffers copied, so FedAvg averages a complete model).
        local_steps: K, used by ``local_steps`` only.
        lr: the client's learning rate, used by ``local_steps`` only.

    Returns:
        (update, loss) with detached CPU tensors.
    """
    with torch.no_grad():
        loss = float(client_loss(model(images), labels))
    if kind == "gradient":
        update = batch_gradient(model, images, labels)
    elif kind == "local_steps":
        trained = local_steps_update(model, images, labels, steps=local_steps, lr=lr)
        update = {name: trained.get(name, value) for name, value in model.state_dict().items()}
    else:
        raise ValueError(f"unknown update kind {kind!r}; expected 'gradient' or 'local_steps'")
    return {name: value.detach().cpu().clone() for name, value in update.items()}, loss


@torch.no_grad()
def evaluate_model(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 512
) -> tuple[float, float]:
    """(mean loss, accuracy) of ``model`` on a held-out set; (nan, nan) for an empty set."""
    if len(labels) == 0:
        return float("nan"), float("nan")
    total_loss, correct = 0.0, 0
    for start in range(0, len(labels), batch_size):
        x, y = images[start : start + batch_size], labels[start : start + batch_size]
        logits = model(x)
        total_loss += float(client_loss(logits, y)) * len(y)
        correct += int((logits.argmax(dim=-1) == y).sum())
    return total_loss / len(labels), correct / len(labels)
