"""Membership inference on one client's update: the contract, the registry and the public scoring function.

Threat model (passive, honest-but-curious server): besides the update and the global weights it sent, the server
holds a set of candidate records (image and label each) — some of them trained on by the client in this round,
the others not — without knowing which are which. A membership attack gives every candidate a score, higher
meaning "more likely a member". It sees the :class:`~fedleak.types.Observation` and the candidates' images and
labels, in an order that says nothing about membership; only the scorer (``fedleak.metrics.membership``) knows
which candidates are members. Nothing here imports Flower, Ray or the data code.

Use :func:`score_candidates` to score any records (canaries, held-out images, a client's shard) against one
observation::

    scores = score_candidates(observation, images, labels, attack="gradient_alignment")

Attacks register with :func:`register_membership_attack`; each lives in its own file under ``attacks/``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from fedleak.errors import UserError
from fedleak.registry import Registry
from fedleak.training import loss_of
from fedleak.types import Observation

#: Candidates go through the model in chunks of this many, so 3200 per-example gradients never sit in memory at once.
DEFAULT_CHUNK = 512


class MembershipAttack:
    """Base class. Subclasses set ``Config`` (a dataclass), ``paper`` and implement :meth:`score`."""

    name: ClassVar[str] = ""
    #: Citation (authors, venue, arXiv id or link) shown beside every result row.
    paper: ClassVar[str] = ""
    #: True when the attack needs each candidate's own gradient (a model that mixes the examples of a batch,
    #: e.g. with BatchNorm, has none).
    needs_per_example_gradients: ClassVar[bool] = False

    @dataclasses.dataclass
    class Config:
        chunk: int = DEFAULT_CHUNK

    def __init__(self, config: Any | None = None, device: str | torch.device = "cpu"):
        self.config = config if config is not None else self.Config()
        self.device = torch.device(device)

    def score(self, observation: Observation, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One score per candidate (``len(images)``), higher = more likely trained on; float64 on the CPU."""
        raise NotImplementedError


MEMBERSHIP_ATTACKS: Registry[type[MembershipAttack]] = Registry("membership attack")


def register_membership_attack(name: str) -> Callable[[type[MembershipAttack]], type[MembershipAttack]]:
    def decorator(cls: type[MembershipAttack]) -> type[MembershipAttack]:
        cls.name = name
        MEMBERSHIP_ATTACKS.add(name, cls)
        return cls

    return decorator


def list_membership_attacks() -> list[str]:
    return MEMBERSHIP_ATTACKS.names()


def get_membership_attack(name: str, device: str | torch.device = "cpu", **params: Any) -> MembershipAttack:
    """The attack ``name`` built from ``params`` (its Config fields); unknown names and fields are UserErrors."""
    cls = MEMBERSHIP_ATTACKS.get(name)
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(params) - fields)
    if unknown:
        raise UserError(f"unknown parameter {unknown[0]!r} for membership attack {name!r}; allowed: "
                        f"{', '.join(sorted(fields))}")
    return cls(cls.Config(**params), device=device)


def score_candidates(
    observation: Observation,
    images: torch.Tensor,
    labels: torch.Tensor,
    attack: str = "gradient_alignment",
    device: str | torch.device = "cpu",
    **params: Any,
) -> np.ndarray:
    """Score candidate records against one observed update: the one function to call from elsewhere.

    Args:
        observation: what the server saw (update + global weights + granted metadata).
        images: the candidates, N×C×H×W in [0, 1], in any order that does not reveal membership.
        labels: their class indices (N), which the server holds with the records.
        attack: a name from :func:`list_membership_attacks`.
        device: where to compute.
        **params: the attack's Config fields (e.g. ``chunk``).

    Returns:
        N float64 scores, higher = more likely a member of the update's training data.
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} candidate images but {len(labels)} labels")
    scores = get_membership_attack(attack, device=device, **params).score(observation, images, labels)
    return scores.detach().to("cpu", torch.float64).numpy()


# -- shared pieces ---------------------------------------------------------------------------------------------
def trained_names(model: nn.Module) -> list[str]:
    """The parameters SGD trains, in the model's order (buffers such as BatchNorm statistics are not)."""
    return [name for name, p in model.named_parameters() if p.requires_grad]


def per_example_gradients(
    model: nn.Module, weights: dict[str, torch.Tensor], images: torch.Tensor, labels: torch.Tensor,
) -> torch.Tensor:
    """Each candidate's gradient of the client loss at ``weights``, flattened over the trained parameters in
    :func:`trained_names` order: an N×P matrix, vectorised with ``torch.func`` (``vmap`` over ``grad``)."""
    names = trained_names(model)
    params = {k: weights[k] for k in names}
    buffers = {k: v for k, v in weights.items() if k not in params}
    loss = loss_of(model)

    def one(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = torch.func.functional_call(model, (p, buffers), (x.unsqueeze(0),))
        return loss(out, y.unsqueeze(0))

    grads = torch.func.vmap(torch.func.grad(one), in_dims=(None, 0, 0))(params, images, labels)
    return torch.cat([grads[k].reshape(len(images), -1) for k in names], dim=1)


def per_example_losses(
    model: nn.Module, weights: dict[str, torch.Tensor], images: torch.Tensor, labels: torch.Tensor,
) -> torch.Tensor:
    """Each candidate's client loss (the loss the client trains with, on a batch of one) at ``weights``: one batched
    forward pass, the loss vectorised over its rows."""
    loss = loss_of(model)
    logits = torch.func.functional_call(model, weights, (images,))
    return torch.func.vmap(lambda out, y: loss(out.unsqueeze(0), y.unsqueeze(0)))(logits, labels)


def in_chunks(
    images: torch.Tensor, labels: torch.Tensor, chunk: int, device: torch.device,
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """``fn`` applied to consecutive chunks of the candidates (moved to ``device``), results concatenated on the CPU."""
    out = []
    for start in range(0, len(images), max(1, chunk)):
        x = images[start:start + chunk].to(device, torch.float32)
        y = labels[start:start + chunk].to(device)
        with torch.no_grad():
            out.append(fn(x, y).detach().to("cpu", torch.float64))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def on_device(weights: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.detach().to(device) for k, v in weights.items()}


def per_example_gradients_problem(model: nn.Module, in_channels: int, image_size: int, num_classes: int) -> str | None:
    """None when per-example gradients of ``model`` can be computed, else why not (one line)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            return (f"it has {type(module).__name__} layers, which mix the examples of a batch, so a record has no "
                    "gradient of its own")
    weights = {k: v.detach() for k, v in model.state_dict().items()}
    images = torch.rand(2, in_channels, image_size, image_size)
    labels = torch.zeros(2, dtype=torch.int64) % max(1, num_classes)
    try:
        per_example_gradients(model, weights, images, labels)
    except Exception as exc:  # noqa: BLE001 — any failure of torch.func here is the answer
        text = str(exc).strip().splitlines()
        return f"torch.func could not take per-example gradients ({type(exc).__name__}: {text[0] if text else ''})"
    return None
