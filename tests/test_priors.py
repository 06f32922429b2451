"""The matching attacks' default image prior follows the measured table (per channels and side) and every result
states the prior it used."""

from __future__ import annotations

import pytest
import torch

from fedleak.attacks import get_attack
from fedleak.attacks.priors import TV_DEFAULT_COLOUR_ABOVE_32PX, image_prior
from fedleak.observe import observe
from fedleak.training import batch_gradient
from fedleak.types import ModelSpec, ThreatModel


@pytest.mark.parametrize(
    ("shape", "weight"),
    [((3, 64, 64), TV_DEFAULT_COLOUR_ABOVE_32PX), ((3, 48, 48), TV_DEFAULT_COLOUR_ABOVE_32PX),
     ((3, 32, 32), 0.0), ((1, 28, 28), 0.0), ((1, 64, 64), 0.0)],
)
def test_default_prior_per_image_kind(shape, weight):
    prior = image_prior(None, shape)
    assert prior.tv_weight == weight and "default" in prior.origin
    assert image_prior(0.0, shape).tv_weight == 0.0 and image_prior(0.0, shape).origin == "set"


def _observation(channels: int, side: int):
    spec = ModelSpec("lenet", channels, side, 10)
    torch.manual_seed(0)
    model = spec.build()
    images = torch.rand(1, channels, side, side, generator=torch.Generator().manual_seed(1))
    update = batch_gradient(model, images, torch.tensor([3]))
    return observe(spec, model.state_dict(), update, "gradient", ThreatModel(), {"batch_size": 1})


@pytest.mark.parametrize("attack", ["dlg", "idlg"])
def test_l2_attacks_use_and_state_the_measured_default(attack):
    colour = get_attack(attack, iterations=1)(_observation(3, 36))
    assert colour.diagnostics["tv_weight"] == TV_DEFAULT_COLOUR_ABOVE_32PX
    assert "colour images above 32 px" in colour.diagnostics["image_prior"]
    grey = get_attack(attack, iterations=1)(_observation(1, 16))
    assert grey.diagnostics["tv_weight"] == 0.0 and "grey" in grey.diagnostics["image_prior"]
    off = get_attack(attack, iterations=1, tv_weight=0.0)(_observation(3, 36))
    assert off.diagnostics["tv_weight"] == 0.0 and off.diagnostics["image_prior"] == "tv_weight 0 (set)"


def test_the_prior_reaches_the_objective():
    # Same start, same gradient: only the default prior differs, so the two runs must end apart.
    observation = _observation(3, 36)
    with_prior = get_attack("idlg", iterations=2, tolerance=0.0)(observation)
    without = get_attack("idlg", iterations=2, tolerance=0.0, tv_weight=0.0)(observation)
    assert with_prior.status == without.status == "ok"
    assert not torch.equal(with_prior.images, without.images)


def test_inverting_gradients_keeps_its_published_weight_and_says_so():
    recon = get_attack("inverting_gradients", iterations=1, restarts=1)(_observation(1, 16))
    assert recon.diagnostics["tv_weight"] == 1e-4 and "as published" in recon.diagnostics["image_prior"]
