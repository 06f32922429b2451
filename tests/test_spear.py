"""SPEAR (``spear``): exact recovery of a batch through a first Linear + ReLU layer, where ``linear`` returns mixtures;
the registry / ``fedleak attack`` path on ``mlp``; failures that say why; the Observation contract."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from victims import gradient_observation, real_images, run_recording_reads

from fedleak.attacks import get_attack, list_attacks
from fedleak.attacks.spear import SignCheck, first_fc_relu_layer
from fedleak.metrics import match_images, psnr
from fedleak.types import ModelSpec, ThreatModel

#: More classes than images: the gradient reaching the ReLU layer, W2ᵀ(P − Y)ᵀ, then has full rank B.
CLASSES = 8


@dataclasses.dataclass
class TinyObservation:
    """The server's view of one float64 gradient of a tiny FC + ReLU network (not a registered model)."""

    network: nn.Module
    update: dict[str, torch.Tensor]
    model: ModelSpec
    metadata: dict[str, Any]
    kind: str = "gradient"
    threat: ThreatModel = dataclasses.field(default_factory=ThreatModel)
    labels: torch.Tensor | None = None

    def build_model(self) -> nn.Module:
        return self.network

    def gradient(self) -> dict[str, torch.Tensor]:
        return dict(self.update)

    @property
    def batch_size(self) -> int | None:
        return self.metadata.get("batch_size")


def tiny_case(batch: int = 4, units: int = 24, seed: int = 0) -> tuple[TinyObservation, torch.Tensor]:
    """Random 1×4×4 inputs in [0, 1] through Linear(16, units) → ReLU → Linear(units, 8), cross-entropy, float64.

    The ReLU layer sees centred pre-activations so every unit is inactive on about half of the images, the paper's
    setting; at the default initialisation, non-negative inputs leave most units on (or off) for all of them.
    """
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    network = nn.Sequential(nn.Flatten(), nn.Linear(16, units), nn.ReLU(), nn.Linear(units, CLASSES)).double()
    with torch.no_grad():  # centre the pre-activations on the inputs' mid-grey: each unit off for about half
        network[1].bias.copy_(-0.5 * network[1].weight.sum(dim=1))
    images = torch.rand(batch, 1, 4, 4, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, CLASSES, (batch,), generator=generator)
    loss = nn.functional.cross_entropy(network(images), labels)
    grads = torch.autograd.grad(loss, list(network.parameters()))
    update = {name: g.detach() for (name, _), g in zip(network.named_parameters(), grads, strict=True)}
    observation = TinyObservation(network, update, ModelSpec("mlp", 1, 4, CLASSES), {"batch_size": batch})
    return observation, images


def max_error(recon: torch.Tensor, true: torch.Tensor) -> float:
    """Largest pixel error after matching reconstructions to true images one to one."""
    pairs = match_images(recon.double(), true.double())
    return max(float((recon[r].double() - true[t]).abs().max()) for r, t in pairs)


# ---------------------------------------------------------------- known answer


def test_spear_recovers_every_input_exactly_where_linear_returns_mixtures():
    observation, images = tiny_case()
    result = get_attack("spear")(observation)
    assert result.status == "ok", result.reason
    assert result.images.shape == images.shape
    # The attack solves in float64 and returns float32 images: exact up to float32 rounding.
    assert max_error(result.images, images) < 1e-6
    assert result.diagnostics["sign_agreement"] == 1.0 and result.diagnostics["batch_from"] == "metadata"
    mixtures = get_attack("linear")(observation)
    assert mixtures.diagnostics["mixture"] and max_error(mixtures.images, images) > 1e-2


def test_the_sign_check_accepts_true_patterns_and_refuses_a_mixture():
    """A column of dL/dZ is zero exactly where its own image is inactive; a mixture of columns is not."""
    observation, images = tiny_case(batch=4, units=40, seed=1)
    layer = first_fc_relu_layer(observation.network, observation.update, 16)
    live = layer.weight_grad.abs().sum(dim=1) > 0
    _, singular, vh = torch.linalg.svd(layer.weight_grad[live], full_matrices=False)
    check = SignCheck(layer, live, singular[:4, None] * vh[:4])
    inactive = (layer.weight @ images.flatten(1).T + layer.bias[:, None] <= 0)[live]
    assert all(check.margin(inactive[:, i]) > 0 for i in range(4))
    # Zero where both of two images are inactive: what a mixture of their two columns looks like.
    assert check.margin(inactive[:, 0] & inactive[:, 1]) < 0


def test_the_batch_size_is_estimated_from_the_rank_when_not_granted():
    observation, images = tiny_case()
    observation.metadata.clear()
    result = get_attack("spear")(observation)
    assert result.diagnostics["batch_from"] == "estimated" and result.diagnostics["batch"] == 4
    assert max_error(result.images, images) < 1e-6


def test_spear_is_deterministic_from_its_seed():
    observation, _ = tiny_case(batch=5, units=16, seed=2)
    first, second = (get_attack("spear", seed=3, max_samples=20_000)(observation) for _ in range(2))
    assert first.status == second.status
    assert first.diagnostics == second.diagnostics
    if first.images is not None:
        assert torch.equal(first.images, second.images)


# ---------------------------------------------------------------- real gradients, registry and CLI


def test_spear_recovers_a_real_mlp_batch_through_the_registry():
    """Four bundled MNIST digits, one float32 FedSGD gradient of the seeded mlp: every digit comes back."""
    assert "spear" in list_attacks()
    images, labels = real_images("mnist", [0, 1, 2, 3])
    result = get_attack("spear")(gradient_observation("mlp", images, labels))
    assert result.status == "ok", result.reason
    pairs = match_images(result.images.double(), images.double())
    values = psnr(result.images[[r for r, _ in pairs]].double(), images[[t for _, t in pairs]].double())
    assert values.min() > 60, values  # exact up to the float32 gradient
    assert result.labels is None


def test_fedleak_attack_runs_spear_on_mlp(tmp_path: Path):
    from fedleak.drivers.cli.main import main

    out = tmp_path / "spear"
    rc = main(["attack", "--attack", "spear", "--model", "mlp", "--dataset", "mnist", "--split", "test",
               "--indices", "0", "1", "--device", "cpu", "--out", str(out)])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "ok", metrics["reason"]
    assert min(image["psnr"] for image in metrics["per_image"]) > 60


@pytest.mark.parametrize(("model", "activation", "says"), [
    ("lenet", None, "Linear"),       # a convolution first
    ("mlp", "sigmoid", "ReLU"),      # the right layer, but no ReLU sparsity
])
def test_a_model_without_a_first_fc_relu_layer_is_a_failed_result_that_says_why(model, activation, says):
    images, labels = real_images("mnist", [0, 1])
    result = get_attack("spear")(gradient_observation(model, images, labels, activation=activation))
    assert result.status == "failed" and says in result.reason, result.reason


def test_an_exhausted_budget_is_a_failed_result_that_says_so():
    images, labels = real_images("cifar10", list(range(12)))
    result = get_attack("spear", max_samples=64, chunk=64)(gradient_observation("mlp", images, labels))
    assert result.status == "failed" and "max_samples" in result.reason
    assert result.diagnostics["samples"] == 64


def test_bad_settings_are_refused():
    with pytest.raises(Exception, match="min_zero_share"):
        get_attack("spear", min_zero_share=1.5)
    with pytest.raises(Exception, match="zero_tolerance"):
        get_attack("spear", zero_tolerance=0)


# ---------------------------------------------------------------- the Observation contract


def test_spear_reads_only_the_observation_and_needs_no_labels():
    images, labels = real_images("mnist", [4, 5, 6])
    observation = gradient_observation("mlp", images, labels)
    run_recording_reads("spear", observation)
