"""Failures cannot pass as results: a label space of one class, a zero or non-finite update, and a matching run that
ends where it started all give ``failed`` (or a one-line input error), never ``ok``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fedleak.attacks import get_attack, list_attacks
from fedleak.attacks.matching import MatchConfig, match_gradients
from fedleak.attacks.matching_problem import random_init
from fedleak.config.schema import DataConfig
from fedleak.data import load_images
from fedleak.drivers.cli.main import main
from fedleak.errors import UserError
from fedleak.observe import observe
from fedleak.training import batch_gradient
from fedleak.types import ModelSpec, ThreatModel


def _observation(num_classes: int, update=None):
    """A LeNet gradient on one 16 px colour image with label 0 (or ``update`` in its place)."""
    spec = ModelSpec("lenet", 3, 16, num_classes)
    torch.manual_seed(0)
    model = spec.build()
    images = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    labels = torch.zeros(1, dtype=torch.long)
    gradient = batch_gradient(model, images, labels) if update is None else update(model)
    return observe(spec, model.state_dict(), gradient, "gradient", ThreatModel(), {"batch_size": 1})


def test_a_one_class_head_gives_a_zero_gradient_and_idlg_reports_failed():
    # The case of issue 19: LFW photo, label 0, a head of one class. Cross-entropy over one class is 0 for every
    # input, so the gradient is zero and any "reconstruction" is the attack's starting noise.
    observation = _observation(num_classes=1)
    assert all(float(v.abs().max()) == 0 for v in observation.update.values())
    recon = get_attack("idlg", iterations=2)(observation)
    assert recon.status == "failed" and recon.images is None
    assert "zero in every layer" in recon.reason


@pytest.mark.parametrize("attack", list_attacks())
def test_every_attack_fails_on_a_zero_update(attack: str):
    observation = _observation(10, update=lambda model: {k: torch.zeros_like(p) for k, p in model.named_parameters()})
    recon = get_attack(attack)(observation)
    assert recon.status == "failed" and "zero in every layer" in recon.reason


@pytest.mark.parametrize("attack", list_attacks())
def test_every_attack_fails_on_a_non_finite_update(attack: str):
    def poisoned(model):
        update = {k: torch.full_like(p, 0.1) for k, p in model.named_parameters()}
        next(iter(update.values()))[0] = float("nan")
        return update

    recon = get_attack(attack)(_observation(10, update=poisoned))
    assert recon.status == "failed" and "not finite" in recon.reason


def test_a_zero_weight_change_fails_a_local_steps_update():
    spec = ModelSpec("lenet", 3, 16, 10)
    model = spec.build()
    weights = model.state_dict()
    observation = observe(spec, weights, weights, "local_steps", ThreatModel(),
                          {"batch_size": 1, "lr": 0.1, "local_steps": 2})
    recon = get_attack("dlg", iterations=2)(observation)
    assert recon.status == "failed" and "weight change is zero" in recon.reason


def test_a_nonzero_update_still_runs():
    recon = get_attack("idlg", iterations=2)(_observation(10))
    assert recon.status == "ok" and recon.images is not None


def test_a_matching_run_that_ends_where_it_started_is_failed():
    # The update does not depend on the images: the objective is flat, no optimiser moves the start.
    target = {"w": torch.ones(3)}

    def flat_update(images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"w": images.sum() * 0 + torch.full((3,), 0.5)}

    config = MatchConfig(iterations=3, restarts=1, max_redraws=1)
    result = match_gradients(flat_update, target, random_init((1, 1, 4, 4), "gray"), torch.zeros(1).long(), config)
    assert result.status == "failed" and result.images is None
    assert "ended where they started" in result.reason
    assert [a["outcome"] for a in result.attempts] == ["unmoved", "unmoved"]


def test_an_informed_start_may_stay_where_it_is():
    # A caller's tensor start (e.g. the hybrid's linear solve) is a guess the loop may keep.
    target = {"w": torch.full((3,), 0.5)}
    start = torch.rand(1, 1, 4, 4)

    def flat_update(images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"w": images.sum() * 0 + torch.full((3,), 0.5)}

    result = match_gradients(flat_update, target, start, torch.zeros(1).long(), MatchConfig(iterations=2))
    assert result.status == "ok" and torch.equal(result.images, start)


def _photo(tmp_path: Path) -> Path:
    path = tmp_path / "face.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((), "lfw has no fixed label space"),
        (("--num-classes", "5", "--label", "5"), "label 5 is out of range"),
        (("--num-classes", "1"), "num_classes"),
    ],
)
def test_single_lfw_image_needs_a_label_space_that_holds_its_label(extra, message, tmp_path: Path, capsys):
    argv = ["attack", "--attack", "idlg", "--model", "lenet", "--dataset", "lfw", "--image", str(_photo(tmp_path)),
            "--device", "cpu", "--out", str(tmp_path / "out")]
    if "--label" not in extra:
        argv += ["--label", "0"]
    assert main(argv + list(extra)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_an_explicit_label_space_builds_the_head(tmp_path: Path):
    config = DataConfig(dataset="lfw", source="image", path=str(_photo(tmp_path)), label=7, num_classes=20)
    images = load_images(config)
    assert images.num_classes == 20 and images.labels.tolist() == [7]


def test_a_source_with_one_class_is_refused(tmp_path: Path):
    path = tmp_path / "faces.npz"
    np.savez(path, x=np.zeros((3, 8, 8, 3), np.uint8), y=np.zeros(3, np.int64))
    with pytest.raises(UserError, match="one-class head"):
        load_images(DataConfig(dataset="lfw", source="npz", path=str(path)))
    assert load_images(DataConfig(dataset="lfw", source="npz", path=str(path), num_classes=4)).num_classes == 4


def test_labels_outside_an_explicit_class_count_are_refused():
    with pytest.raises(UserError, match="outside data.num_classes = 5"):
        load_images(DataConfig(dataset="mnist", split="test", num_classes=5))
