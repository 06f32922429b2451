"""DP-SGD on a client's round with Opacus (Abadi et al. 2016, "Deep Learning with Differential Privacy",
arXiv 1607.00133).

Every step clips each sample's gradient to ``max_grad_norm``, sums, adds Gaussian noise of standard deviation
``noise_multiplier · max_grad_norm`` and divides by the *expected* batch size (Opacus' ``GradSampleModule`` +
``DPOptimizer``). Batches are Poisson samples of the shard (:meth:`DpSgdDefense.batches`), as the accountant
assumes; a Poisson batch may be empty, and then the step is noise alone.
A FedSGD client sends one privatized gradient; a FedAvg client steps on every batch of its round and sends its
weights. What this spends is accounted in :mod:`fedleak.privacy`.
"""

from __future__ import annotations

import copy
import warnings
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from fedleak.defenses.base import Batch, Defense, Update, register_defense
from fedleak.privacy import PrivacySpent, dp_sgd_round, dp_sgd_spent, import_opacus, poisson_steps_per_epoch
from fedleak.rero import dp_sgd_rero
from fedleak.training import LocalTraining, loss_of

#: Keeps the Poisson draws of DP-SGD apart from the other per-round streams (batches 0, defense noise 1).
_POISSON_STREAM = 2


@register_defense
class DpSgdDefense(Defense):
    """DP-SGD (Abadi et al. 2016, arXiv 1607.00133) with Opacus: every local step clips each sample's gradient to
    ``max_grad_norm`` and adds Gaussian noise of ``noise_multiplier · max_grad_norm`` to their sum; batches are
    Poisson samples of the shard. The privacy spent (ε at ``delta``, per record, composed over the rounds the client
    took part in) is accounted with Opacus' RDP accountant and written into every result row; see
    :mod:`fedleak.privacy`."""

    kind: Literal["dp_sgd"] = "dp_sgd"
    max_grad_norm: Annotated[float, Field(gt=0)] = 1.0
    noise_multiplier: Annotated[float, Field(ge=0)] = 1.0
    delta: Annotated[float, Field(gt=0, lt=1)] = 1e-5

    def training_noise_multiplier(self) -> float:
        """The noise multiplier the training steps use: ``noise_multiplier``.

        TEST-ONLY HOOK: a test may subclass this defense (under a kind of its own, registered in the test) and
        return 0 here, to break the mechanism while :meth:`spent` still reports the ε of ``noise_multiplier`` —
        the broken defense a privacy audit must catch. No scenario field reaches it."""
        return self.noise_multiplier

    def batches(self, shard: np.ndarray, plan: LocalTraining, seed: int, client: int,
                server_round: int) -> list[np.ndarray]:
        """Each image joins each batch independently with probability q = B/n (Poisson sampling, as Opacus' DP data
        loader draws): one batch for ``gradient``/``local_steps``, ``E·int(1/q)`` for ``epochs``."""
        shard = np.asarray(shard, dtype=np.int64)
        rate = min(1.0, plan.batch_size / len(shard))
        count = plan.local_epochs * poisson_steps_per_epoch(rate) if plan.kind == "epochs" else 1
        rng = np.random.default_rng([seed % 2**64, client, server_round, _POISSON_STREAM])
        return [shard[rng.random(len(shard)) < rate] for _ in range(count)]

    def train(self, model: nn.Module, batches: list[Batch], plan: LocalTraining, generator: torch.Generator,
              shard_size: int) -> Update:
        """Opacus' noisy steps; the divisor is the expected batch size ``q·n = batch_size``."""
        expected = min(plan.batch_size, shard_size)
        steps = plan.local_steps if plan.kind == "local_steps" else 1
        return dp_sgd_update(model, batches, steps, plan.lr, self, expected, generator,
                             send_gradient=plan.kind == "gradient")

    def spent(self, plan: LocalTraining, shard_size: int, rounds: int) -> PrivacySpent:
        mechanism = dp_sgd_round(plan.kind, self.noise_multiplier, plan.batch_size, shard_size, plan.local_steps,
                                 plan.local_epochs)
        return dp_sgd_spent(mechanism, rounds, self.delta)

    def rero(self, plan: LocalTraining, shard_size: int, rounds: int, kappa: float) -> float:
        """ReRo bound of the accounted mechanism (the claimed ``noise_multiplier``, as :meth:`spent` reads it)."""
        mechanism = dp_sgd_round(plan.kind, self.noise_multiplier, plan.batch_size, shard_size, plan.local_steps,
                                 plan.local_epochs)
        return dp_sgd_rero(mechanism, rounds, kappa)

    def check_model(self, model: nn.Module, model_name: str) -> str | None:
        """DP-SGD needs per-sample gradients: a model Opacus cannot train (e.g. BatchNorm) is refused."""
        problem = validate_model(model)
        if problem is None:
            return None
        return f"Opacus cannot train model {model_name!r} ({problem}); choose a model without BatchNorm, e.g. lenet"


def validate_model(model: nn.Module) -> str | None:
    """Why Opacus cannot train ``model`` (e.g. BatchNorm), or None when it can."""
    import_opacus()
    # lazy (start-up): Opacus takes seconds to import; only DP-SGD needs it
    from opacus.validators import ModuleValidator

    errors = ModuleValidator.validate(model, strict=False)
    return str(errors[0]).split(". ")[0] if errors else None


def _optimizer(work: nn.Module, lr: float, defense: DpSgdDefense, expected_batch_size: int,
               generator: torch.Generator):
    # lazy (start-up): Opacus takes seconds to import; only DP-SGD needs it
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    with warnings.catch_warnings():
        # Opacus warns about secure RNG on every optimiser it builds; the seeded generator is deliberate here.
        warnings.simplefilter("ignore")
        wrapped = GradSampleModule(work)
        optimizer = DPOptimizer(
            torch.optim.SGD(wrapped.parameters(), lr=lr),
            noise_multiplier=defense.training_noise_multiplier(),
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
