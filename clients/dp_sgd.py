"""DP-SGD on a client's batch with Opacus (Abadi et al. 2016, "Deep Learning with Differential Privacy",
arXiv 1607.00133).

Every step clips each sample's gradient to ``max_grad_norm``, sums, adds Gaussian noise of standard deviation
``noise_multiplier · max_grad_norm`` and divides by the batch size (Opacus' ``GradSampleModule`` + ``DPOptimizer``).
A FedSGD client sends that privatized gradient; a FedAvg client takes K such steps and sends its weights.

Accounting: Opacus' RDP accountant with sampling rate ``batch_size / shard_size`` and one step per round (K per
round for local steps), assuming the client trained in every round so far. Our clients draw a fixed-size batch
rather than Poisson sampling, so ε is the figure DP-SGD would give under Poisson sampling — the usual reporting
convention, not a proof about this sampler.
"""

from __future__ import annotations

import copy
import logging
import warnings

import torch
from torch import nn

from fedleak.config.schema import DpSgdDefense
from fedleak.training import client_loss
from fedleak.types import UpdateKind


def _import_opacus() -> None:
    """Import Opacus without the logging handler it installs on the root logger at import time (``basicConfig``
    in ``opacus.utils.module_utils``), which would print every DEBUG record of Flower and Ray."""
    root = logging.getLogger()
    before = list(root.handlers)
    import opacus.accountants  # noqa: F401
    import opacus.optimizers  # noqa: F401
    import opacus.validators  # noqa: F401

    for handler in root.handlers[:]:
        if handler not in before:
            root.removeHandler(handler)


def validate_model(model: nn.Module) -> str | None:
    """Why Opacus cannot train ``model`` (e.g. BatchNorm), or None when it can."""
    _import_opacus()
    from opacus.validators import ModuleValidator

    errors = ModuleValidator.validate(model, strict=False)
    return str(errors[0]).split(". ")[0] if errors else None


def dp_sgd_update(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    kind: UpdateKind,
    local_steps: int,
    lr: float,
    defense: DpSgdDefense,
    generator: torch.Generator,
) -> tuple[dict[str, torch.Tensor], float]:
    """The privatized update and the loss on the batch before training; ``model`` is left unchanged.

    Same contract as :func:`fedleak.clients.local_training.compute_update`.
    """
    _import_opacus()
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    work = copy.deepcopy(model)
    with torch.no_grad():
        loss = float(client_loss(work(images), labels))
    with warnings.catch_warnings():
        # Opacus warns about secure RNG on every optimiser it builds; the seeded generator is deliberate here.
        warnings.simplefilter("ignore")
        wrapped = GradSampleModule(work)
        optimizer = DPOptimizer(
            torch.optim.SGD(wrapped.parameters(), lr=lr),
            noise_multiplier=defense.noise_multiplier,
            max_grad_norm=defense.max_grad_norm,
            expected_batch_size=len(labels),
            generator=generator,
        )
    steps = 1 if kind == "gradient" else local_steps
    with warnings.catch_warnings():
        # Opacus' per-sample hooks fire on module outputs because the images do not require gradients: expected.
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        for _ in range(steps):
            optimizer.zero_grad()
            client_loss(wrapped(images), labels).backward()
            if kind == "gradient":
                optimizer.pre_step()  # leaves the privatized gradient in p.grad without stepping
            else:
                optimizer.step()
    if kind == "gradient":
        update = {name: p.grad for name, p in work.named_parameters() if p.requires_grad}
    else:
        update = work.state_dict()
    return {name: value.detach().cpu().clone() for name, value in update.items()}, loss


def dp_epsilon(defense: DpSgdDefense, sample_rate: float, steps: int) -> float:
    """ε spent after ``steps`` DP-SGD steps at ``sample_rate`` (Opacus RDP accountant, at ``defense.delta``)."""
    _import_opacus()
    from opacus.accountants import RDPAccountant

    if defense.noise_multiplier == 0:
        return float("inf")
    accountant = RDPAccountant()
    accountant.history = [(defense.noise_multiplier, min(1.0, sample_rate), steps)]
    return float(accountant.get_epsilon(delta=defense.delta))
