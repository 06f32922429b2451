"""The Cocktail Party Attack (``cpa``) and its model (``mlp``): a known mixture it must unmix, real gradients,
aggregates and FedAvg updates, and the Observation contract."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from victims import real_images, run_recording_reads

from fedleak.attacks import get_attack
from fedleak.attacks.cpa import differences, estimate_sources, fast_ica, principal_axes, whitening_matrix
from fedleak.metrics import match_images, psnr
from fedleak.models import get_model, list_models
from fedleak.observe import observe
from fedleak.training import batch_gradient, local_steps_update
from fedleak.types import ModelSpec, Observation, ThreatModel

SHAPE = (3, 32, 32)


def _cifar(count: int, start: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Real CIFAR-10 test images bundled with foolbox (20 of them)."""
    return real_images("cifar10", list(range(start, start + count)))


def _matched_psnr(recon: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """PSNR of every true image against its reconstruction after one-to-one matching."""
    pairs = match_images(recon.double(), true.double())
    return psnr(recon[[r for r, _ in pairs]].double(), true[[t for _, t in pairs]].double())


def _mlp_observation(images: torch.Tensor, labels: torch.Tensor, threat: ThreatModel | None = None,
                     metadata: dict | None = None, seed: int = 0) -> Observation:
    """What the server sees of one client's float32 FedSGD gradient on the mlp at its seeded initialisation."""
    spec = ModelSpec("mlp", images.shape[1], images.shape[-1], 10)
    torch.manual_seed(seed)
    model = spec.build()
    meta = {"batch_size": len(images)} if metadata is None else metadata
    return observe(spec, model.state_dict(), batch_gradient(model, images, labels), "gradient",
                   threat or ThreatModel(), meta)


# ---------------------------------------------------------------- the mlp model


def test_mlp_is_registered_with_a_256_unit_first_layer_on_the_flat_image():
    assert "mlp" in list_models()
    model = get_model("mlp", in_channels=3, image_size=32, num_classes=10)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(3 * 32 * 32, 256), (256, 10)]
    assert all(m.bias is not None for m in linears)
    assert sum(isinstance(m, nn.ReLU) for m in model.modules()) == 1


def test_mlp_width_is_configurable_and_it_trains():
    from fedleak.models.mlp import MLP

    model = MLP(1, 28, 10, widths=(64, 32))
    assert [m.out_features for m in model.modules() if isinstance(m, nn.Linear)] == [64, 32, 10]
    images, labels = real_images("mnist", list(range(8)))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    with torch.no_grad():
        first = float(nn.functional.cross_entropy(model(images), labels))
    for _ in range(60):
        loss = nn.functional.cross_entropy(model(images), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert loss.item() < 0.5 * first
    with pytest.raises(ValueError, match="widths"):
        MLP(1, 28, 10, widths=())


# ---------------------------------------------------------------- the ICA core


@pytest.mark.parametrize(("dataset", "shape", "least"), [
    ("cifar10", SHAPE, 0.98),
    ("mnist", (1, 28, 28), 0.9),  # digits share strokes: correlated sources, which ICA separates less cleanly
])
def test_fast_ica_unmixes_a_known_mixture_of_real_images(dataset: str, shape: tuple[int, int, int], least: float):
    """Eight real images mixed by a random 40×8 matrix: every one comes back, up to order, sign and scale."""
    images, _ = real_images(dataset, list(range(8)))
    sources = images.double().flatten(1)
    mixing = torch.randn(40, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    mixtures = mixing @ sources
    centred, axes, singular = principal_axes(differences(mixtures, shape))
    assert estimate_sources(singular) == 8
    whitening = whitening_matrix(axes, singular, 8, centred.shape[1])
    rotation, _, converged = fast_ica(whitening @ centred, 1000, 1e-9, torch.Generator().manual_seed(0))
    assert converged
    unmixed = rotation @ whitening @ mixtures
    similarity = torch.corrcoef(torch.cat([unmixed, sources]))[:8, 8:].abs()
    # Each true image has one recovered source that is nearly collinear with it, and no two share one.
    best = similarity.max(dim=0)
    assert best.values.min() > least, best.values
    assert len(set(best.indices.tolist())) == 8


def test_cpa_recovers_a_synthetic_mixture_at_true_intensity():
    """A gradient built by hand as A·S (bias gradient A·1): the attack returns the images themselves."""
    images, labels = _cifar(8, start=8)
    spec = ModelSpec("mlp", *SHAPE[:1], SHAPE[-1], 10)
    torch.manual_seed(0)
    model = spec.build()
    update = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    mixing = torch.randn(256, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64).abs() / 8
    update["body.0.weight"] = (mixing @ images.double().flatten(1)).float()
    update["body.0.bias"] = mixing.sum(dim=1).float()
    observation = observe(spec, model.state_dict(), update, "gradient", ThreatModel(), {"batch_size": 8})
    result = get_attack("cpa")(observation)
    assert result.status == "ok", result.reason
    assert result.images.shape == images.shape and result.diagnostics["intensity"] == "bias"
    values = _matched_psnr(result.images, images)
    assert values.min() > 25, values


# ---------------------------------------------------------------- real updates


def test_cpa_recovers_most_of_a_real_mlp_batch():
    images, labels = _cifar(16)
    result = get_attack("cpa")(_mlp_observation(images, labels))
    assert result.status == "ok", result.reason
    assert result.images.shape == images.shape
    assert 0 <= float(result.images.min()) and float(result.images.max()) <= 1
    values = _matched_psnr(result.images, images)
    assert (values >= 20).float().mean() >= 0.75, values
    assert result.diagnostics["sources_from"] == "metadata" and result.diagnostics["ica_converged"]
    assert result.diagnostics["singular_value_gap"] > 100  # the gradient has rank 16: a sharp drop after it


def test_minmax_intensity_normalises_every_image():
    images, labels = _cifar(8)
    result = get_attack("cpa", intensity="minmax")(_mlp_observation(images, labels))
    assert result.diagnostics["intensity"] == "minmax"
    flat = result.images.flatten(1)
    torch.testing.assert_close(flat.min(dim=1).values, torch.zeros(8))
    torch.testing.assert_close(flat.max(dim=1).values, torch.ones(8))
    assert (_matched_psnr(result.images, images) >= 15).float().mean() >= 0.75


def test_batch_size_is_estimated_from_the_rank_when_not_granted():
    images, labels = _cifar(12)
    threat = ThreatModel(batch_size_known=False)
    observation = _mlp_observation(images, labels, threat, metadata={"batch_size": 12})
    assert observation.batch_size is None  # observe() dropped the ungranted batch size
    result = get_attack("cpa")(observation)
    assert result.diagnostics["sources_from"] == "estimated" and result.diagnostics["sources"] == 12
    assert (_matched_psnr(result.images, images) >= 20).float().mean() >= 0.75


def test_a_secure_aggregation_aggregate_is_one_larger_mixture():
    """The weighted mean of three clients' gradients (4 + 4 + 8 images) gives all 16 images back."""
    images, labels = _cifar(16)
    spec = ModelSpec("mlp", *SHAPE[:1], SHAPE[-1], 10)
    torch.manual_seed(0)
    model = spec.build()
    parts = [slice(0, 4), slice(4, 8), slice(8, 16)]
    weights = [4.0, 4.0, 8.0]
    grads = [batch_gradient(model, images[p], labels[p]) for p in parts]
    mean = {k: sum(w * g[k] for w, g in zip(weights, grads, strict=True)) / sum(weights) for k in grads[0]}
    observation = observe(spec, model.state_dict(), mean, "gradient", ThreatModel(),
                          {"batch_size": 16, "client": -1})
    result = get_attack("cpa")(observation)
    assert result.images.shape[0] == 16
    assert (_matched_psnr(result.images, images) >= 20).float().mean() >= 0.75


def test_a_fedavg_update_is_attacked_through_its_pseudo_gradient():
    images, labels = _cifar(8)
    spec = ModelSpec("mlp", *SHAPE[:1], SHAPE[-1], 10)
    torch.manual_seed(0)
    model = spec.build()
    trained = local_steps_update(model, images, labels, steps=3, lr=0.05)
    observation = observe(spec, model.state_dict(), trained, "local_steps", ThreatModel(),
                          {"batch_size": 8, "lr": 0.05, "local_steps": 3})
    result = get_attack("cpa")(observation)
    assert result.status == "ok" and result.diagnostics["update_mode"] == "pseudo_gradient"
    assert (_matched_psnr(result.images, images) >= 20).float().mean() >= 0.75


def test_an_epoch_update_mixes_every_image_of_the_shard():
    """One epoch over 16 images in minibatches of 4: four steps, one pseudo-gradient, all 16 images in it."""
    from fedleak.clients.update import LocalTraining, client_update
    from fedleak.defenses import NoDefense, noise_generator

    images, labels = _cifar(16)
    spec = ModelSpec("mlp", *SHAPE[:1], SHAPE[-1], 10)
    torch.manual_seed(0)
    model = spec.build()
    plan = LocalTraining("epochs", 4, 1, 1, 0.05)
    batches = [(images[i:i + 4], labels[i:i + 4]) for i in range(0, 16, 4)]
    update, _ = client_update(model, batches, plan, NoDefense(), noise_generator(0, 0, 1), 16)
    metadata = {"batch_size": 4, "lr": 0.05, "local_steps": 4, "local_epochs": 1, "num_examples": 16}
    result = get_attack("cpa")(observe(spec, model.state_dict(), update, "epochs", ThreatModel(), metadata))
    assert result.diagnostics["sources_from"] == "num_examples" and result.images.shape[0] == 16
    assert (_matched_psnr(result.images, images) >= 20).float().mean() >= 0.75


def test_a_model_without_a_first_linear_layer_is_a_failed_result_that_says_why():
    images, labels = _cifar(2)
    spec = ModelSpec("lenet", *SHAPE[:1], SHAPE[-1], 10)
    torch.manual_seed(0)
    model = spec.build()
    observation = observe(spec, model.state_dict(), batch_gradient(model, images, labels), "gradient",
                          ThreatModel(), {"batch_size": 2})
    result = get_attack("cpa")(observation)
    assert result.status == "failed" and "Linear" in result.reason


def test_bad_settings_are_refused():
    with pytest.raises(Exception, match="intensity"):
        get_attack("cpa", intensity="brightest")
    with pytest.raises(Exception, match="filter"):
        get_attack("cpa", filter="blur")


# ---------------------------------------------------------------- the Observation contract


def test_cpa_reads_only_the_observation_and_needs_no_labels():
    images, labels = _cifar(4)
    observation = _mlp_observation(images, labels)
    result = run_recording_reads("cpa", observation)
    assert result.labels is None


def test_cpa_is_deterministic_from_its_seed():
    images, labels = _cifar(8)
    observation = _mlp_observation(images, labels)
    first, second = (get_attack("cpa", seed=4)(observation) for _ in range(2))
    assert torch.equal(first.images, second.images)
