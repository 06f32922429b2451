"""What a client computes in one round, in plain torch (no Flower): the one client update.

The ClientApp (training here, the defense in its mod), ``fedleak attack`` and the benchmarks all call these
functions, so what is attacked is exactly what a client sends:

- :func:`round_batches`: which of its images the client trains on, in order — one batch (``gradient``,
  ``local_steps``), or E shuffled passes over the whole shard in minibatches (``epochs``); the defense's own draw
  when it makes one (Poisson batches under DP-SGD, as its accountant assumes). Reproducible from (seed, client,
  round).
- :func:`train_update`: the update before any transform — a gradient, or the full state dict after SGD (the
  defense's own steps when it changes them: DP-SGD with Opacus).
- :func:`client_update`: :func:`train_update` followed by the client's update transform (prune, quantize,
  local DP), the same call the defense mod makes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fedleak.data import client_batch_indices
from fedleak.defenses import Defense, NoDefense, apply_defense
from fedleak.privacy import PrivacySpent
from fedleak.training import LocalTraining, batch_gradient, functional_gradient, local_steps_update, loss_of

Batch = tuple[torch.Tensor, torch.Tensor]


def round_batches(shard: np.ndarray, plan: LocalTraining, seed: int, client: int, server_round: int,
                  defense: Defense | None = None) -> list[np.ndarray]:
    """The index batches the client trains on this round, in order (indices into the image set): the defense's own
    draw when it makes one (DP-SGD's Poisson batches), else one batch, or E shuffled passes for ``epochs``."""
    shard = np.asarray(shard, dtype=np.int64)
    drawn = (defense or NoDefense()).batches(shard, plan, seed, client, server_round)
    if drawn is not None:
        return drawn
    if plan.kind != "epochs":
        return [client_batch_indices(shard, plan.batch_size, seed, client, server_round)]
    if len(shard) == 0:
        raise ValueError(f"client {client} has an empty shard; give it data (clients.partition) or fewer clients")
    rng = np.random.default_rng([seed % 2**64, client, server_round])
    batches = []
    for _ in range(plan.local_epochs):
        order = shard[rng.permutation(len(shard))]
        batches += [order[i : i + plan.batch_size] for i in range(0, len(order), plan.batch_size)]
    return batches


def round_loss(model: nn.Module, batches: list[Batch]) -> float:
    """Mean client loss of the round's images under the weights received (before training)."""
    total, count, loss = 0.0, 0, loss_of(model)
    with torch.no_grad():
        for images, labels in batches:
            if len(labels):
                total += float(loss(model(images), labels)) * len(labels)
                count += len(labels)
    return total / count if count else float("nan")


def _sgd_over_batches(model: nn.Module, batches: list[Batch], lr: float) -> dict[str, torch.Tensor]:
    """Plain SGD, one step per minibatch in order; the full state dict after it (buffers copied)."""
    weights = {k: v.detach().clone() for k, v in model.named_parameters()}
    for images, labels in batches:
        grads = functional_gradient(model, weights, images, labels)
        weights = {k: weights[k] - lr * grads[k] for k in weights}
    return {name: weights.get(name, value) for name, value in model.state_dict().items()}


def train_update(model: nn.Module, batches: list[Batch], plan: LocalTraining, defense: Defense,
                 generator: torch.Generator, shard_size: int) -> tuple[dict[str, torch.Tensor], float]:
    """The update before any transform, and the round's loss before training; ``model`` is left unchanged.

    ``gradient``: the gradient on the one batch (keyed by parameter); ``local_steps``: the full state dict after K
    SGD steps on the one batch; ``epochs``: the full state dict after one SGD step per minibatch. Under DP-SGD the
    steps are the defense's own when it changes them (DP-SGD: Opacus', noise from ``generator``).
    """
    loss = round_loss(model, batches)
    defended = defense.train(model, batches, plan, generator, shard_size)
    if defended is not None:
        return defended, loss
    if plan.kind == "gradient":
        update = batch_gradient(model, *batches[0])
    elif plan.kind == "local_steps":
        trained = local_steps_update(model, *batches[0], steps=plan.local_steps, lr=plan.lr)
        update = {name: trained.get(name, value) for name, value in model.state_dict().items()}
    else:
        update = _sgd_over_batches(model, batches, plan.lr)
    return {name: value.detach().cpu().clone() for name, value in update.items()}, loss


def client_update(model: nn.Module, batches: list[Batch], plan: LocalTraining, defense: Defense,
                  generator: torch.Generator, shard_size: int) -> tuple[dict[str, torch.Tensor], float]:
    """The update as sent: :func:`train_update`, then the defense's transform (as the ClientApp's mod applies it)."""
    update, loss = train_update(model, batches, plan, defense, generator, shard_size)
    sent = model.state_dict() if plan.sends_weights() else None
    return apply_defense(update, defense, generator, sent=sent), loss


def total_steps(plan: LocalTraining, batches: list[np.ndarray]) -> int:
    """SGD steps of the round: what turns ``w_old − w_new`` into a pseudo-gradient (with lr)."""
    if plan.kind == "gradient":
        return 1
    if plan.kind == "local_steps":
        return plan.local_steps
    return len(batches)


def privacy_spent(defense: Defense, plan: LocalTraining, shard_size: int, rounds: int) -> PrivacySpent | None:
    """ε (with δ and unit) of the client's DP defense after ``rounds`` rounds of taking part; None without DP."""
    return defense.spent(plan, shard_size, rounds)


@torch.no_grad()
def evaluate_model(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 512
) -> tuple[float, float]:
    """(mean loss, accuracy) of ``model`` on a held-out set; (nan, nan) for an empty set."""
    if len(labels) == 0:
        return float("nan"), float("nan")
    total_loss, correct, loss = 0.0, 0, loss_of(model)
    for start in range(0, len(labels), batch_size):
        x, y = images[start : start + batch_size], labels[start : start + batch_size]
        logits = model(x)
        total_loss += float(loss(logits, y)) * len(y)
        correct += int((logits.argmax(dim=-1) == y).sum())
    return total_loss / len(labels), correct / len(labels)
