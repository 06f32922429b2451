"""The public Python API, used as a notebook would: ``import fedleak`` and nothing else from the package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import fedleak
from fedleak.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def _mnist(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    from fedleak.config.schema import DataConfig
    from fedleak.data import load_images

    images, labels = load_images(DataConfig(dataset="mnist", split="test")).get(list(range(n)))
    return images, labels


def test_import_is_cheap_and_exports_the_api() -> None:
    code = ("import sys, fedleak; heavy = [m for m in ('torch', 'flwr', 'ray', 'pandas') if m in sys.modules]; "
            "print(heavy, sorted(fedleak.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("[] ")  # nothing heavy until a name is used
    for name in ("load_scenario", "simulate", "attack", "open_run", "Run", "AttackResult", "Scenario"):
        assert name in fedleak.__all__ and getattr(fedleak, name) is not None
    with pytest.raises(AttributeError):
        fedleak.no_such_thing  # noqa: B018


def test_load_and_override_a_scenario() -> None:
    scenario = fedleak.load_scenario(ROOT / "scenarios" / "smoke.yaml", overrides=["training.rounds=4"])
    assert isinstance(scenario, fedleak.Scenario) and scenario.training.rounds == 4
    again = fedleak.load_scenario(scenario.model_dump(mode="json"), overrides=["seed=9"])
    assert again.seed == 9 and again.training.rounds == 4
    with pytest.raises(UserError, match="training.rounds"):
        fedleak.load_scenario(ROOT / "scenarios" / "smoke.yaml", overrides=["training.rounds=zero"])


def test_attack_ones_own_module_and_a_registry_model() -> None:
    images, labels = _mnist(1)
    torch.manual_seed(0)
    mine = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))  # a first linear layer: the closed form is exact
    result = fedleak.attack("linear", mine, images, labels)
    assert result.status == "ok" and result.summary["psnr"] > 60
    assert list(result.per_image.columns) == ["image", "recovered", "psnr", "ssim", "mse"]
    assert len(result.per_image) == 1 and bool(result.per_image["recovered"].iloc[0])
    assert result.observation.labels is None  # labels were not granted, so the attacker never saw them
    # The user's weights are the global model the attack saw, and the module itself is left unchanged.
    assert torch.equal(result.observation.global_weights["1.weight"], mine[1].weight.detach())
    from fedleak.models import list_models

    assert not any(name.startswith("user-") for name in list_models())  # registered for that attack only
    registry = fedleak.attack("idlg", "lenet", images, labels, num_classes=10, iterations=2)
    assert registry.status in ("ok", "failed") and registry.observation.model.name == "lenet"


def test_open_a_finished_run_as_dataframes(tmp_path: Path) -> None:
    from fedleak.report import RunWriter, build_report
    from fedleak.types import LeakageRecord

    writer = RunWriter(tmp_path)
    writer.write_scenario(fedleak.load_scenario(ROOT / "scenarios" / "smoke.yaml"))
    writer.append_leakage(LeakageRecord(
        round=1, client=0, attack="idlg", batch_size=2, local_steps=1, lr=0.1, update_kind="gradient",
        defense="none", status="ok", reason="", psnr=20.0, ssim=0.5, mse=0.01, label_accuracy=1.0, success=0.5,
        seconds=1.0, labels_known=False, local_hparams_known=True, batch_size_known=True,
        psnr_per_image="35.000 -"))
    writer.append_round({"round": 1, "accuracy": 0.1, "loss": 2.3})
    build_report(tmp_path)
    run = fedleak.open_run(tmp_path)
    assert run.scenario["name"] == "smoke" and run.provenance is None and run.arms == {}
    assert list(run.images["psnr"].isna()) == [False, True] and run.images["psnr"].iloc[0] == 35.0
    assert run.leakage["attack"].tolist() == ["idlg"] and run.rounds["accuracy"].tolist() == [0.1]
    assert "worst_median_psnr" in run.clients.columns
    with pytest.raises(UserError):
        fedleak.open_run(tmp_path / "nowhere")


@pytest.mark.slow
def test_the_notebook_example_simulates_and_reads_back(tmp_path: Path) -> None:
    scenario = fedleak.load_scenario(ROOT / "scenarios" / "smoke.yaml", overrides=["training.rounds=1"])
    run = fedleak.simulate(scenario, out=tmp_path / "run")
    assert run.ok, run.problems
    per_attack = run.images.groupby("attack")["psnr"].median()
    assert set(per_attack.index) == {a.name for a in scenario.attacks}
    assert run.provenance["status"] == "complete" and run.provenance["seed"] == scenario.seed
    assert len(fedleak.open_run(run.path).leakage) == len(run.leakage)
