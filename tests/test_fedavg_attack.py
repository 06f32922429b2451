"""The FedAvg attack (Dimitrov et al. 2022, arXiv 2206.00866) on a real epoch update it must invert, its failure
reasons, and the pieces it is built from (label orders, copy assignment, the epoch simulation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedleak.attacks import get_attack
from fedleak.attacks.fedavg import EpochPlan, assign_copies, epoch_copies_update_fn, label_orders
from fedleak.clients.update import LocalTraining
from fedleak.clients.victim import victim_observation
from fedleak.config.schema import DataConfig
from fedleak.data import load_images
from fedleak.metrics import psnr, score_batch
from fedleak.types import ModelSpec, Observation, ThreatModel

#: The client's seed: with it, the two epochs visit the two images in different orders ([0, 1] then [1, 0]), which
#: one fixed simulated order (the plain simulation) cannot represent.
SEED = 4
#: DLG's sigmoid LeNet with its uniform(−0.5, 0.5) init learns a class in one step at lr 0.1, after which that
#: class leaves no trace in the later steps' bias; 0.01 keeps every label visible in the update.
LR = 0.01


def epoch_victim(indices: list[int], epochs: int, batch_size: int, threat: ThreatModel | None = None,
                 seed: int = SEED) -> tuple[Observation, torch.Tensor, torch.Tensor, list[np.ndarray]]:
    """A client's epoch update on real MNIST test digits, built by the one client update, and the server's view."""
    image_set = load_images(DataConfig(dataset="mnist", split="test"))
    images, labels = image_set.get(indices)
    spec = ModelSpec("lenet", 1, images.shape[-1], image_set.num_classes, "sigmoid")
    torch.manual_seed(seed)
    model = spec.build()
    plan = LocalTraining("epochs", batch_size, 1, epochs, LR)
    observation, positions = victim_observation(spec, model, images, labels, plan, seed=seed, threat=threat)
    return observation, images, labels, positions


@pytest.mark.slow  # about 15-30 s on two cores
def test_recovers_both_images_of_two_epochs_in_different_orders():
    observation, images, labels, positions = epoch_victim([0, 1], epochs=2, batch_size=1)
    orders = [int(p[0]) for p in positions]
    assert orders[:2] != orders[2:], "the victim should shuffle its two epochs differently"
    recon = get_attack("fedavg", iterations=100)(observation)
    assert recon.status == "ok", recon.reason
    score = score_batch(recon.images, recon.labels, images, labels)
    per_image = [s.psnr for s in score.per_image]
    # 30 dB: the reconstruction is the digit; noise or the dataset's mean image score about 5-10 dB here.
    assert min(per_image) >= 30, per_image
    noise = torch.rand(images.shape, generator=torch.Generator().manual_seed(0))
    assert float(psnr(noise, images).max()) < 30
    assert sorted(recon.labels.tolist()) == sorted(labels.tolist())
    assert recon.diagnostics["update_mode"] == "simulate_epochs_per_epoch_copies"
    assert recon.diagnostics["prior"] == "matched" and recon.diagnostics["labels_method"].startswith("counts")
    assert len(recon.history) >= 2 and recon.history[-1].shape == images.shape


def test_fails_with_a_reason_without_the_client_hyperparameters():
    hidden = ThreatModel(local_hparams_known=False, batch_size_known=False)
    observation, *_ = epoch_victim([0, 1], epochs=2, batch_size=1)
    meta = {k: v for k, v in observation.metadata.items() if k not in ("lr", "local_epochs", "batch_size")}
    blind = Observation(observation.model, observation.global_weights, observation.update, "epochs", hidden, meta)
    recon = get_attack("fedavg", iterations=1)(blind)
    assert recon.status == "failed"
    assert "lr" in recon.reason and "local_epochs" in recon.reason and "pseudo-gradient" in recon.reason


def test_refuses_a_gradient_update_with_a_reason():
    observation, *_ = epoch_victim([0], epochs=1, batch_size=1)
    gradient = Observation(observation.model, observation.global_weights, observation.gradient(), "gradient",
                           observation.threat, {"batch_size": 1})
    recon = get_attack("fedavg", iterations=1)(gradient)
    assert recon.status == "failed" and "epoch update" in recon.reason


def test_simulated_copies_reproduce_the_client_update_at_the_true_images():
    """At the true images laid out in the client's order, the simulation gives back the observed pseudo-gradient."""
    observation, images, labels, positions = epoch_victim([0, 1, 2], epochs=2, batch_size=2)
    plan = EpochPlan.of(observation)
    order = torch.as_tensor(np.concatenate(positions))
    update_fn = epoch_copies_update_fn(observation.build_model(), observation.global_weights, plan)
    simulated = update_fn(images[order], labels[order])
    for name, target in observation.gradient().items():
        torch.testing.assert_close(simulated[name].detach(), target, rtol=1e-4, atol=1e-5)


def test_label_orders_are_distinct_and_start_with_the_sorted_order():
    labels = torch.tensor([2, 7, 7])
    orders = label_orders(labels, epochs=2, count=5, generator=torch.Generator().manual_seed(0))
    sequences = {tuple(labels[o].reshape(-1).tolist()) for o in orders}
    assert len(sequences) == len(orders) == 5
    assert labels[orders[0]].reshape(-1).tolist() == [2, 7, 7, 2, 7, 7]
    # Only (3!/2!)² = 9 distinct sequences exist: asking for more returns them all, no more.
    assert len(label_orders(labels, 2, 20, torch.Generator().manual_seed(0))) == 9


def test_copies_are_matched_by_image_and_label():
    images = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    slots = torch.tensor([0, 1, 1])
    # Epoch 1 holds the same three images as epoch 0, in the order 2, 0, 1.
    copies = torch.cat([images, images[[2, 0, 1]]])
    assignment = assign_copies(copies, torch.cat([slots, slots[[2, 0, 1]]]), epochs=2)
    assert assignment.tolist() == [[0, 1, 2], [4, 5, 3]]
