"""What an attacker receives: the threat model's grants are applied in one place, ground truth never travels."""

from __future__ import annotations

import ast
from pathlib import Path

import torch

from fedleak.observe import observe
from fedleak.training import batch_gradient, local_steps_update, simulate_local_steps
from fedleak.types import ModelSpec, Observation, ThreatModel

ROOT = Path(__file__).resolve().parents[1]
SPEC = ModelSpec("lenet", in_channels=1, image_size=28, num_classes=10)


def victim(batch: int = 2, seed: int = 0):
    torch.manual_seed(seed)
    model = SPEC.build()
    images = torch.rand(batch, 1, 28, 28)
    labels = torch.arange(batch) % 10
    return model, images, labels


def test_ungranted_metadata_and_labels_are_dropped() -> None:
    model, images, labels = victim()
    grads = batch_gradient(model, images, labels)
    meta = {"lr": 0.1, "local_steps": 3, "batch_size": 2, "round": 1, "client": 0}
    threat = ThreatModel(labels_known=False, local_hparams_known=False, batch_size_known=False)
    obs = observe(SPEC, model.state_dict(), grads, "gradient", threat, meta, labels)
    assert obs.labels is None
    assert set(obs.metadata) == {"round", "client"}


def test_granted_metadata_and_labels_are_kept() -> None:
    model, images, labels = victim()
    grads = batch_gradient(model, images, labels)
    threat = ThreatModel(labels_known=True, local_hparams_known=True)
    obs = observe(SPEC, model.state_dict(), grads, "gradient", threat, {"lr": 0.1, "local_steps": 1}, labels)
    assert torch.equal(obs.labels, labels)
    assert obs.metadata == {"lr": 0.1, "local_steps": 1}


def test_observation_has_no_ground_truth_field() -> None:
    fields = set(Observation.__dataclass_fields__)
    # A new field here must be justified as something a real server sees (or an explicit grant).
    assert fields == {"model", "global_weights", "update", "kind", "threat", "metadata", "labels"}


def test_observation_is_a_copy_not_a_view_of_client_state() -> None:
    model, images, labels = victim()
    grads = batch_gradient(model, images, labels)
    obs = observe(SPEC, model.state_dict(), grads, "gradient", ThreatModel())
    before = obs.update["fc.bias"].clone()
    grads["fc.bias"].add_(1.0)
    assert torch.equal(obs.update["fc.bias"], before)


def test_attack_code_cannot_import_data_flower_or_ray() -> None:
    """attacks/ sees only the Observation: no data loaders (ground truth), no Flower, no Ray."""
    forbidden = ("fedleak.data", "fedleak.scoring", "fedleak.report", "flwr", "ray", "fedleak.clients",
                 "fedleak.server", "fedleak.runtime")
    files = sorted((ROOT / "attacks").glob("*.py"))
    assert files
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(forbidden), f"{path.name} imports {name}"


def test_pseudo_gradient_of_one_local_step_is_the_gradient() -> None:
    model, images, labels = victim()
    grads = batch_gradient(model, images, labels)
    new_weights = local_steps_update(model, images, labels, steps=1, lr=0.05)
    meta = {"lr": 0.05, "local_steps": 1}
    obs = observe(SPEC, model.state_dict(), new_weights, "local_steps", ThreatModel(), meta)
    pseudo = obs.gradient()
    for name, g in grads.items():
        torch.testing.assert_close(pseudo[name], g, rtol=1e-4, atol=1e-5)


def test_attacker_simulation_of_local_steps_matches_the_client() -> None:
    model, images, labels = victim()
    client = local_steps_update(model, images, labels, steps=3, lr=0.05)
    weights = {k: v.detach() for k, v in model.named_parameters()}
    attacker = simulate_local_steps(model, weights, images, labels, steps=3, lr=0.05)
    for name in client:
        torch.testing.assert_close(attacker[name].detach(), client[name], rtol=1e-5, atol=1e-6)


def test_pseudo_gradient_leaves_out_batchnorm_buffers() -> None:
    spec = ModelSpec("resnet18", in_channels=3, image_size=16, num_classes=10)
    torch.manual_seed(0)
    model = spec.build()
    images, labels = torch.rand(2, 3, 16, 16), torch.tensor([1, 2])
    trained = local_steps_update(model, images, labels, steps=1, lr=0.1)
    full_reply = {name: trained.get(name, value) for name, value in model.state_dict().items()}
    obs = observe(spec, model.state_dict(), full_reply, "local_steps", ThreatModel(), {"lr": 0.1, "local_steps": 1})
    pseudo = obs.gradient()
    assert set(pseudo) == {name for name, _ in model.named_parameters()}
    assert "bn1.running_mean" in full_reply and "bn1.running_mean" not in pseudo
