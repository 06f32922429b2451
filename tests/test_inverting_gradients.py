"""Inverting Gradients as published (Geiping et al. 2020, arXiv 2003.14053), and TV in every matching attack."""

from __future__ import annotations

import pytest
import torch

from fedleak.attacks import get_attack
from fedleak.attacks.inverting_gradients import SETTINGS, InvertingGradients
from fedleak.attacks.matching import MatchConfig, match_gradients, update_distance
from fedleak.attacks.matching_problem import random_init
from fedleak.attacks.priors import total_variation
from fedleak.observe import observe
from fedleak.training import batch_gradient
from fedleak.types import ModelSpec, ThreatModel


def _observation(seed: int = 0):
    spec = ModelSpec("lenet", 1, 8, 10)
    torch.manual_seed(seed)
    model = spec.build()
    images = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(seed + 1))
    labels = torch.tensor([3])
    update = batch_gradient(model, images, labels)
    return observe(spec, model.state_dict(), update, "gradient", ThreatModel(), {"batch_size": 1}), model, images


def test_the_loss_is_one_cosine_over_the_concatenated_gradient() -> None:
    config = InvertingGradients.Config().match_config()
    assert config.distance == "cosine" and config.optimizer == "adam" and config.signed_gradients
    assert config.lr_schedule and config.parametrization == "clamp" and config.lr == 0.1
    observation, model, images = _observation()
    target = observation.gradient()
    candidate = batch_gradient(model, torch.rand(1, 1, 8, 8), torch.tensor([3]))
    flat_u = torch.cat([candidate[k].reshape(-1) for k in target])
    flat_t = torch.cat([target[k].reshape(-1) for k in target])
    whole = 1 - float(flat_u @ flat_t / (flat_u.norm() * flat_t.norm()))
    assert float(update_distance(candidate, target, config.distance)) == pytest.approx(whole, rel=1e-4)


def test_settings_name_the_cpu_default_and_the_papers_full_run() -> None:
    assert SETTINGS["full"] == (24_000, 8)
    cpu, full = InvertingGradients.Config(), InvertingGradients.Config(setting="full")
    assert (cpu.match_config().iterations, cpu.match_config().restarts) == SETTINGS["cpu"]
    assert (full.match_config().iterations, full.match_config().restarts) == (24_000, 8)
    custom = InvertingGradients.Config(setting="full", iterations=50, restarts=1).match_config()
    assert (custom.iterations, custom.restarts) == (50, 1)
    with pytest.raises(ValueError, match="setting"):
        InvertingGradients.Config(setting="huge")


def test_the_step_schedule_divides_the_step_by_ten_at_three_eighths_five_eighths_seven_eighths() -> None:
    observation, model, _ = _observation()
    config = MatchConfig(distance="cosine", optimizer="adam", iterations=16, lr=0.1, lr_schedule=True,
                         signed_gradients=True, parametrization="clamp")
    seen = []
    original = torch.optim.Adam.step

    def spy(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    torch.optim.Adam.step = spy
    try:
        match_gradients(model, observation.gradient(), random_init((1, 1, 8, 8), "uniform"), torch.tensor([3]),
                        config)
    finally:
        torch.optim.Adam.step = original
    assert seen == pytest.approx([0.1] * 6 + [0.01] * 4 + [0.001] * 4 + [0.0001] * 2)


@pytest.mark.parametrize("name, colour64, grey28", [("dlg", 1e-4, 0.0), ("idlg", 1e-4, 0.0),
                                                    ("inverting_gradients", 1e-4, 1e-4)])
def test_every_matching_attack_has_a_tv_weight(name: str, colour64: float, grey28: float) -> None:
    config = get_attack(name).config
    assert config.tv_weight is None  # the default depends on the image kind (priors.image_prior)
    assert config.image_prior((3, 64, 64)).tv_weight == colour64 and config.image_prior((1, 28, 28)).tv_weight == grey28
    assert get_attack(name, tv_weight=0.5).config.match_config().tv_weight == 0.5


@pytest.mark.parametrize("name", ["dlg", "idlg", "inverting_gradients"])
def test_a_tv_prior_smooths_the_reconstruction(name: str) -> None:
    observation, _, _ = _observation(seed=2)
    plain = get_attack(name, seed=0, iterations=20, tv_weight=0.0)(observation)
    # L2: relative to Σ|g|² (≈ 22 here); cosine: as is.
    weight = 0.1 if name == "inverting_gradients" else 5e-3
    smooth = get_attack(name, seed=0, iterations=20, tv_weight=weight)(observation)
    assert plain.status == smooth.status == "ok"
    assert smooth.diagnostics["tv_weight"] == weight
    assert float(total_variation(smooth.images)) < 0.8 * float(total_variation(plain.images))
