"""DP-SGD on a client's round with Opacus (Abadi et al. 2016, "Deep Learning with Differential Privacy",
arXiv 1607.00133).

Every step clips each sample's gradient to ``max_grad_norm``, sums, adds Gaussian noise of standard deviation
``noise_multiplier · max_grad_norm`` and divides by the *expected* batch size (Opacus' ``GradSampleModule`` +
``DPOptimizer``). Batches are Poisson samples of the shard (see :func:`fedleak.clients.update.round_batches`), as
the accountant assumes; a Poisson batch may be empty, and then the step is noise alone.
A FedSGD client sends one privatized gradient; a FedAvg client steps on every batch of its round and sends its
weights. What this spends is accounted in :mod:`fedleak.privacy`.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from fedleak.config.schema import DpSgdDefense
from fedleak.privacy import import_opacus
from fedleak.training import loss_of

Batch = tuple[torch.Tensor, torch.Tensor]


def validate_model(model: nn.Module) -> str | None:
    """Why Opacus cannot train ``model`` (e.g. BatchNorm), or None when it can."""
    import_opacus()
    from opacus.validators import ModuleValidator

    errors = ModuleValidator.validate(model, strict=False)
    return str(errors[0]).split(". ")[0] if errors else None


def _optimizer(work: nn.Module, lr: float, defense: DpSgdDefense, expected_batch_size: int,
               generator: torch.Generator):
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    with warnings.catch_warnings():
        # Opacus warns about secure RNG on every optimiser it builds; the seeded generator is deliberate here.
        warnings.simplefilter("ignore")
        wrapped = GradSampleModule(work)
        optimizer = DPOptimizer(
            torch.optim.SGD(wrapped.parameters(), lr=lr),
            noise_multiplier=defense.noise_multiplier,
            max_grad_norm=defense.max_grad_norm,
            expected_batch_size=expected_batch_size,
            generator=generator,
        )
    return wrapped, optimizer


def _backward(wrapped: nn.Module, images: torch.Tensor, labels: torch.Tensor, client_loss) -> None:
    logits = wrapped(images)
    # An empty Poisson batch has no mean loss: a zero loss gives zero per-sample gradients, and the noise stays.
    loss = client_loss(logits, labels) if len(labels) else logits.sum() * 0.0
    loss.backward()


def dp_sgd_update(
    model: nn.Module,
    batches: list[Batch],
    steps_per_batch: int,
    lr: float,
    defense: DpSgdDefense,
    expected_batch_size: int,
    generator: torch.Generator,
    send_gradient: bool,
) -> dict[str, torch.Tensor]:
    """The privatized update; ``model`` is left unchanged.

    Args:
        model: the global model of the round.
        batches: the round's Poisson batches, in training order.
        steps_per_batch: noisy steps on each batch (K for a batch reused K times, else 1).
        lr: the client's learning rate.
        defense: clipping norm, noise multiplier.
        expected_batch_size: ``sample rate · shard size``, the divisor Opacus uses for Poisson batches.
        generator: the noise's source.
        send_gradient: True for FedSGD (one batch, one step: the privatized gradient is sent, nothing is stepped);
            False for FedAvg (the weights after all steps are sent, as a full state dict).
    """
    import_opacus()
    work = copy.deepcopy(model)
    client_loss = loss_of(model)  # read from the model itself: Opacus' wrapper does not carry its attributes
    wrapped, optimizer = _optimizer(work, lr, defense, expected_batch_size, generator)
    with warnings.catch_warnings():
        # Opacus' per-sample hooks fire on module outputs because the images do not require gradients: expected.
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        for images, labels in batches:
            for _ in range(steps_per_batch):
                optimizer.zero_grad()
                _backward(wrapped, images, labels, client_loss)
                if send_gradient:
                    optimizer.pre_step()  # leaves the privatized gradient in p.grad without stepping
                else:
                    optimizer.step()
    if send_gradient:
        update = {name: p.grad for name, p in work.named_parameters() if p.requires_grad}
    else:
        update = work.state_dict()
    return {name: value.detach().cpu().clone() for name, value in update.items()}
