"""The client's loss and update, in one place so clients, `fedleak attack` and attackers agree exactly.

The loss is softmax cross-entropy with mean reduction over the batch. An attacker that matches gradients
must use the same reduction, or Euclidean matching fails quietly (a known pitfall of reference code).
A model may declare another loss by a class attribute ``client_loss_name`` (a key of :data:`LOSSES`; ``linreg-mse``
declares ``"mse"``); :func:`loss_of` reads it, so the client update and the attackers' simulation stay one loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from fedleak.types import UpdateKind


def client_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy, mean over the batch. ``labels`` are class indices or per-sample distributions."""
    if labels.dtype.is_floating_point:
        return -(labels * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
    return F.cross_entropy(logits, labels)


def squared_error_loss(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Squared error summed over the outputs, mean over the batch. Float ``labels`` (B × outputs) are the real
    targets themselves; class indices become one-hot targets, or, for a one-output model (scalar regression), the
    class index as a real number."""
    if labels.dtype.is_floating_point:
        target = labels
    elif outputs.shape[-1] == 1:
        target = labels.to(outputs.dtype).reshape(-1, 1)
    else:
        target = F.one_hot(labels, outputs.shape[-1]).to(outputs.dtype)
    return ((outputs - target) ** 2).sum(dim=-1).mean()


#: The losses a model may declare by its ``client_loss_name`` class attribute (default ``cross_entropy``).
LOSSES = {"cross_entropy": client_loss, "mse": squared_error_loss}


def loss_of(model: nn.Module):
    """The client loss ``model`` is trained with: its declared ``client_loss_name``, else cross-entropy."""
    return LOSSES[getattr(model, "client_loss_name", "cross_entropy")]


def named_params(model: nn.Module) -> dict[str, torch.Tensor]:
    return dict(model.named_parameters())


def batch_gradient(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, create_graph: bool = False
) -> dict[str, torch.Tensor]:
    """Gradient of the client loss on one batch, keyed by parameter name."""
    params = named_params(model)
    loss = loss_of(model)(model(images), labels)
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
    return dict(zip(params, grads, strict=True))


def local_steps_update(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, steps: int, lr: float
) -> dict[str, torch.Tensor]:
    """Weights after ``steps`` plain SGD steps on the same batch (FedAvg's local training on one batch).

    The model is not modified; the returned tensors are detached.
    """
    weights = {k: v.detach().clone() for k, v in named_params(model).items()}
    for _ in range(steps):
        grads = functional_gradient(model, weights, images, labels)
        weights = {k: weights[k] - lr * grads[k] for k in weights}
    return {k: v.detach() for k, v in weights.items()}


def functional_gradient(
    model: nn.Module,
    weights: dict[str, torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor,
    create_graph: bool = False,
) -> dict[str, torch.Tensor]:
    """Gradient of the client loss at ``weights`` (not the module's own), differentiable when asked.

    Attackers use this to simulate K local steps on dummy data and differentiate through them.
    """
    if not create_graph:
        weights = {k: v.detach().requires_grad_(True) for k, v in weights.items()}
    else:
        weights = {k: v if v.requires_grad else v.detach().requires_grad_(True) for k, v in weights.items()}
    logits = torch.func.functional_call(model, weights, (images,))
    loss = loss_of(model)(logits, labels)
    grads = torch.autograd.grad(loss, list(weights.values()), create_graph=create_graph)
    return dict(zip(weights, grads, strict=True))


def simulate_local_steps(
    model: nn.Module,
    weights: dict[str, torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor,
    steps: int,
    lr: float,
) -> dict[str, torch.Tensor]:
    """K differentiable SGD steps from ``weights`` (the attacker's simulation of the client)."""
    current = dict(weights)
    for _ in range(steps):
        grads = functional_gradient(model, current, images, labels, create_graph=True)
        current = {k: current[k] - lr * grads[k] for k in current}
    return current


def simulate_epochs(
    model: nn.Module,
    weights: dict[str, torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor,
    epochs: int,
    batch_size: int,
    lr: float,
) -> tuple[dict[str, torch.Tensor], int]:
    """E differentiable passes of minibatch SGD over ``images`` from ``weights``, in one fixed order: consecutive
    minibatches of ``batch_size``, the same every epoch (the attacker cannot know the client's shuffles; the dummy
    images are interchangeable, so the first epoch's order is no loss). Returns the final weights and the steps."""
    current, steps = dict(weights), 0
    for _ in range(epochs):
        for start in range(0, len(images), batch_size):
            batch = slice(start, start + batch_size)
            grads = functional_gradient(model, current, images[batch], labels[batch], create_graph=True)
            current = {k: current[k] - lr * grads[k] for k in current}
            steps += 1
    return current, steps


class PerClientTraining(Protocol):
    """What :meth:`LocalTraining.of` reads of a scenario (named without importing the schema, which imports the
    defenses, which import this module)."""

    training: Any

    def client_settings(self, client: int) -> tuple[int, int, float]: ...

    def client_epochs(self, client: int) -> int: ...


@dataclass(frozen=True)
class LocalTraining:
    """How one client trains in every round (the scenario's training section after the client's overrides)."""

    kind: UpdateKind
    batch_size: int
    local_steps: int
    local_epochs: int
    lr: float

    @classmethod
    def of(cls, scenario: PerClientTraining, client: int) -> LocalTraining:
        batch_size, steps, lr = scenario.client_settings(client)
        return cls(scenario.training.update, batch_size, steps, scenario.client_epochs(client), lr)

    def sends_weights(self) -> bool:
        """FedAvg replies carry weights (defenses then act on their change); FedSGD replies a gradient."""
        return self.kind != "gradient"
