"""The one-run audit catches a broken DP-SGD: noise switched off while the accountant still reports its ε."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedleak.canaries import draw_canaries
from fedleak.canary_scores import audit_update
from fedleak.clients.update import LocalTraining, privacy_spent, train_update
from fedleak.config.schema import DataConfig, TrainingConfig
from fedleak.data import load_images, split_eval
from fedleak.types import ModelSpec

#: Noise multiplier the accountant is told: one full-batch release at σ = 4 is ε ≈ 1.01 at δ = 1e-5.
SIGMA = 4.0
CANARIES, GUESSES, BASE = 300, 60, 300


def audit_one_round(noise_on: bool) -> tuple[float, float]:
    """(ε lower bound of the audit, ε the accountant reports) for one FedSGD round of DP-SGD on one client's shard:
    ``BASE`` training images plus each of ``CANARIES`` mislabelled held-out images with probability ½."""
    images = load_images(DataConfig(dataset="mnist", source="bundled"))
    labels = np.asarray(images.labels)
    train, held_out = split_eval(len(images), 0.2, seed=0)
    base = train[:BASE]
    canaries = draw_canaries(held_out, labels[held_out], CANARIES, [0], images.num_classes, seed=0)[0]
    inserted, inserted_labels = canaries.inserted()
    shard_labels = np.concatenate([labels[base], inserted_labels])
    x = torch.as_tensor(images.get(np.concatenate([base, inserted]))[0], dtype=torch.float32)
    y = torch.as_tensor(shard_labels, dtype=torch.int64)
    # Batch size = shard size: Poisson sampling at rate 1 takes every record, so the one batch is the whole shard.
    plan = LocalTraining("gradient", batch_size=len(y), local_steps=1, local_epochs=1, lr=0.1)
    batches = [(x, y)]
    claimed = TrainingConfig.model_validate(
        {"defense": {"kind": "dp_sgd", "max_grad_norm": 1.0, "noise_multiplier": SIGMA, "delta": 1e-5}}).defense
    # The broken mechanism: the same defense with its noise off; the accountant below still reads ``claimed``.
    trained = claimed if noise_on else claimed.model_copy(update={"noise_multiplier": 0.0})
    torch.manual_seed(0)
    model = ModelSpec("lenet", images.channels, images.image_size, images.num_classes, "relu").build()
    update, _ = train_update(model, batches, plan, trained, torch.Generator().manual_seed(0), len(y))
    lookup = lambda idx: tuple(torch.as_tensor(a) for a in images.get(idx))  # noqa: E731
    result = audit_update(model, update, False, canaries, lookup, base, labels[base], clip=1.0, guesses=GUESSES,
                          delta=1e-5)
    return result.epsilon_lower, privacy_spent(claimed, plan, len(y), rounds=1).epsilon


@pytest.mark.slow
def test_audit_catches_noise_switched_off_and_passes_the_real_mechanism():
    broken, claimed = audit_one_round(noise_on=False)
    assert 0.9 < claimed < 1.1
    assert broken > claimed
    honest, _ = audit_one_round(noise_on=True)
    assert honest < claimed
