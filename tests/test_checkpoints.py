"""Checkpoints: a run's saved global weights feed ``fedleak attack --checkpoint`` and ``training.init: checkpoint``;
a file that does not fit the model is one line naming the field. Also ``fedleak attack --update epochs``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from flwr.app import ArrayRecord

from fedleak.drivers.cli.main import main
from fedleak.drivers.scenarios import parse_scenario
from fedleak.errors import UserError
from fedleak.server.app import initial_weights, save_checkpoint
from fedleak.types import ModelSpec

SPEC = ModelSpec("lenet", 1, 28, 10, activation="relu")


def _trained_checkpoint(folder: Path) -> Path:
    torch.manual_seed(5)
    weights = SPEC.build().state_dict()
    return save_checkpoint(folder, 7, ArrayRecord(torch_state_dict=weights))


def test_a_checkpoint_starts_a_run_with_exactly_its_weights(tmp_path: Path) -> None:
    path = _trained_checkpoint(tmp_path / "checkpoints")
    assert path.name == "round_007.pt"
    scenario = parse_scenario({"data": {"dataset": "mnist"}, "clients": {"count": 2},
                               "training": {"model": "lenet", "activation": "relu", "init": "checkpoint",
                                            "checkpoint": str(path)}})
    weights = initial_weights(scenario, SPEC)
    saved = torch.load(path, weights_only=True)
    assert all(torch.equal(weights[k], saved[k]) for k in saved)


def test_a_checkpoint_of_another_model_is_one_line_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save(ModelSpec("lenet", 3, 32, 10).build().state_dict(), path)  # colour LeNet: other shapes
    scenario = parse_scenario({"data": {"dataset": "mnist"}, "clients": {"count": 2},
                               "training": {"model": "lenet", "init": "checkpoint", "checkpoint": str(path)}})
    with pytest.raises(UserError, match="training.checkpoint") as error:
        initial_weights(scenario, SPEC)
    assert "\n" not in str(error.value)


def _attack(tmp_path: Path, *extra: str) -> int:
    return main(["attack", "--attack", "idlg", "--model", "lenet", "--activation", "relu", "--dataset", "mnist",
                 "--split", "test", "--iters", "2", "--device", "cpu", "--out", str(tmp_path / "out"), *extra])


def test_fedleak_attack_attacks_an_epoch_update_of_a_checkpointed_model(tmp_path: Path) -> None:
    path = _trained_checkpoint(tmp_path / "checkpoints")
    rc = _attack(tmp_path, "--indices", "0", "1", "2", "3", "--update", "epochs", "--epochs", "2",
                 "--batch-size", "2", "--lr", "0.05", "--checkpoint", str(path))
    assert rc == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    settings = metrics["settings"]
    assert settings["checkpoint"] == str(path) and settings["update"] == "epochs"
    assert settings["local_steps"] == 4  # 2 epochs of 2 minibatches of 2
    assert metrics["diagnostics"]["update_mode"] == "simulate_epochs"
    assert len(metrics["per_image"]) == 4  # scored against all four images the victim trained on


def test_fedleak_attack_refuses_a_checkpoint_that_does_not_fit(tmp_path: Path, capsys) -> None:
    path = tmp_path / "other.pt"
    torch.save({"nothing": torch.zeros(1)}, path)
    assert _attack(tmp_path, "--index", "0", "--checkpoint", str(path)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--checkpoint" in err
