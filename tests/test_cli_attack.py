"""``fedleak attack``: every registered attack end to end on a tiny case, option mapping and one-line errors."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from fedleak.attacks import ATTACKS, Attack, list_attacks
from fedleak.drivers.cli.attack import SHORTHANDS
from fedleak.drivers.cli.main import main
from fedleak.metrics import score_batch
from fedleak.models import MODELS
from fedleak.report.single import history_in_true_order, write_history
from fedleak.types import Observation, Reconstruction

#: A model each attack is known to work with (its paper's setting) and the victim, on bundled MNIST test digits.
#: R-CONV solves one linear system per conv layer: 16 px images keep it to a few seconds on two cores.
KNOWN_GOOD: dict[str, tuple[str, list[str]]] = {
    "dlg": ("lenet", ["--index", "0"]),
    "idlg": ("lenet", ["--index", "0"]),
    "ig": ("lenet", ["--index", "0"]),
    "inverting_gradients": ("lenet", ["--index", "0"]),
    "linear": ("linreg", ["--indices", "0", "1"]),
    "cpa": ("mlp", ["--indices", "0", "1", "2", "3"]),
    "spear": ("mlp", ["--indices", "0", "1", "2", "3"]),
    "rconv": ("rconv-lenet", ["--index", "0", "--image-size", "16"]),
    "rgap": ("cnn6", ["--index", "0"]),
    "hybrid": ("cnn6", ["--index", "0"]),
    "fedavg": ("lenet", ["--indices", "0", "1", "--update", "epochs", "--epochs", "2", "--batch-size", "1",
                         "--lr", "0.01"]),
}
TINY_ITERATIONS = "1"


def run_cli(*argv: str) -> int:
    return main(["attack", *argv])


@pytest.mark.slow  # analytic attacks solve large systems; a few seconds each on two cores
@pytest.mark.parametrize("attack", list_attacks())
def test_every_registered_attack_runs_and_writes_its_files(attack: str, tmp_path: Path):
    assert attack in KNOWN_GOOD, (
        f"attack {attack!r} has no known-good model in tests/test_cli_attack.py::KNOWN_GOOD; add one")
    model, victim = KNOWN_GOOD[attack]
    assert model in MODELS, f"the known-good model {model!r} for attack {attack!r} is not registered"
    fields = {f.name for f in dataclasses.fields(ATTACKS.get(attack).Config)}
    extra = ["--iters", TINY_ITERATIONS] if fields & set(SHORTHANDS["iters"]) else []
    out = tmp_path / attack
    rc = run_cli("--attack", attack, "--model", model, "--dataset", "mnist", "--split", "test", *victim, *extra,
                 "--device", "cpu", "--out", str(out))
    assert rc == 0
    for name in ("reconstruction.png", "target.png", "recon.png", "history.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG"), name
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("psnr", "ssim", "mse", "label_accuracy", "seconds", "status", "reason", "per_image"):
        assert key in metrics, key
    assert metrics["status"] in ("ok", "failed")
    if metrics["status"] == "ok" and metrics["psnr"] is not None:
        assert len(metrics["per_image"]) == len(metrics["true_labels"])


class Probe(Attack):
    """Test attack: returns the true-shaped noise with a history and records what it was given."""

    seen: list[Observation] = []

    @dataclasses.dataclass
    class Config:
        iterations: int = 2
        tv_weight: float = 0.0
        keep_history: bool = True

    def reconstruct(self, observation: Observation) -> Reconstruction:
        Probe.seen.append(observation)
        size, channels = observation.model.image_size, observation.model.in_channels
        generator = torch.Generator().manual_seed(self.seed)
        history = [torch.rand(observation.batch_size, channels, size, size, generator=generator)
                   for _ in range(self.config.iterations)]
        return Reconstruction(images=history[-1], history=history if self.config.keep_history else [],
                              diagnostics={"tv_weight": self.config.tv_weight, "big": torch.zeros(1000)})


class Bare(Attack):
    """Test attack with no settings at all."""

    def reconstruct(self, observation: Observation) -> Reconstruction:
        return Reconstruction.failed("nothing to see")


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> type[Probe]:
    # Registered for one test only, so registry-wide tests elsewhere never see these.
    monkeypatch.setitem(ATTACKS._items, "probe", Probe)
    monkeypatch.setitem(ATTACKS._items, "bare", Bare)
    monkeypatch.setattr(Probe, "seen", [])
    Probe.name, Bare.name = "probe", "bare"
    return Probe


BASE = ("--model", "lenet", "--dataset", "mnist", "--split", "test", "--device", "cpu")


def test_options_map_onto_the_attack_config(probe, tmp_path: Path):
    assert run_cli("--attack", "probe", *BASE, "--indices", "3", "4", "--iters", "4", "--tv", "0.5",
                   "--param", "keep_history=false", "--labels-known", "--out", str(tmp_path)) == 0
    (observation,) = probe.seen
    assert observation.kind == "gradient" and observation.batch_size == 2
    assert observation.labels.tolist() == [0, 4]  # MNIST test digits 3 and 4, granted by --labels-known
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["settings"]["params"] == {"iterations": 4, "tv_weight": 0.5, "keep_history": False}
    assert metrics["diagnostics"] == {"tv_weight": 0.5, "big": "tensor of shape (1000,)"}
    assert metrics["history"]["snapshots"] == 0 and "no optimisation history" in metrics["history"]["note"]
    assert metrics["true_labels"] == [0, 4] and metrics["recovered_labels"] is None
    run = json.loads((tmp_path / "run.json").read_text())  # provenance: who ran what, where, when
    assert run["kind"] == "attack" and run["status"] == "complete" and run["seed"] == 0
    assert run["command"][:3] == ["fedleak", "attack", "--attack"] and run["device"]["requested"] == "cpu"


def test_local_steps_update_and_hidden_labels(probe, tmp_path: Path):
    assert run_cli("--attack", "probe", *BASE, "--index", "0", "--update", "local_steps", "--steps", "3",
                   "--lr", "0.05", "--out", str(tmp_path)) == 0
    assert run_cli("--attack", "probe", *BASE, "--index", "0", "--update", "local_steps", "--steps", "3",
                   "--lr", "0.05", "--hparams-unknown", "--batch-size-unknown", "--out", str(tmp_path / "hidden")) == 0
    observation, hidden = probe.seen
    assert observation.kind == "local_steps" and observation.labels is None
    assert observation.metadata["local_steps"] == 3 and observation.metadata["lr"] == 0.05
    assert not {"lr", "local_steps", "batch_size"} & set(hidden.metadata)
    assert json.loads((tmp_path / "hidden" / "metrics.json").read_text())["settings"]["threat"] == {
        "labels_known": False, "local_hparams_known": False, "batch_size_known": False}
    assert set(observation.update) == set(dict(observation.build_model().named_parameters()))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["history"]["snapshots"] == 2 and metrics["status"] == "ok"
    assert 0 < metrics["psnr"] < 20  # noise is far from a digit; PSNR is peak-1 dB, not 255-peak


def test_the_victim_can_defend_its_update(probe, tmp_path: Path):
    assert run_cli("--attack", "probe", *BASE, "--index", "0", "--defense", "prune,ratio=0.9",
                   "--out", str(tmp_path)) == 0
    (observation,) = probe.seen
    flat = torch.cat([v.reshape(-1) for v in observation.gradient().values()])
    assert float((flat == 0).double().mean()) >= 0.89  # 90 % of every tensor pruned, what the server received
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["settings"]["defense"] == "prune(ratio=0.9)"


def test_single_image_file_as_victim(probe, tmp_path: Path):
    from PIL import Image

    image = tmp_path / "digit.png"
    Image.fromarray((np.arange(28 * 28).reshape(28, 28) % 256).astype(np.uint8)).save(image)
    assert run_cli("--attack", "probe", *BASE, "--image", str(image), "--label", "7", "--out",
                   str(tmp_path / "out")) == 0
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["true_labels"] == [7]


def test_failed_attack_still_writes_every_file(probe, tmp_path: Path):
    assert run_cli("--attack", "bare", *BASE, "--index", "0", "--out", str(tmp_path)) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["reason"] == "nothing to see" and metrics["psnr"] is None
    assert all((tmp_path / name).is_file() for name in ("target.png", "recon.png", "history.png"))


def test_dlg_with_no_extra_flags_writes_its_history_figure(tmp_path: Path):
    assert run_cli("--attack", "dlg", *BASE, "--index", "0", "--out", str(tmp_path)) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    history = metrics["history"]
    assert history["snapshots"] >= 10 and len(history["iterations"]) == history["snapshots"]
    assert history["iterations"][0] == 0 and history["iterations"] == sorted(history["iterations"])
    assert metrics["diagnostics"]["history_iterations"] == history["iterations"]
    assert (tmp_path / "history.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("attack", ["dlg", "idlg", "inverting_gradients"])
def test_tv_is_accepted_by_every_matching_attack(attack: str, tmp_path: Path):
    assert run_cli("--attack", attack, *BASE, "--index", "0", "--iters", "2", "--tv", "0.01",
                   "--out", str(tmp_path)) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["settings"]["params"]["tv_weight"] == 0.01 and metrics["diagnostics"]["tv_weight"] == 0.01


def test_an_analytic_history_lists_what_each_layer_solved(tmp_path: Path):
    layers = [{"layer": "conv1", "method": "gradient", "rank": 64, "unknowns": 64, "residual": 1e-9},
              {"layer": "conv2", "method": "forward", "rank": 250, "unknowns": 256, "residual": 0.1}]
    note = write_history(tmp_path / "layers.png", [], [], "rconv", {"layers": layers})
    assert "layer by layer" in note and "2 layers" in note and (tmp_path / "layers.png").is_file()
    note = write_history(tmp_path / "off.png", [], [], "dlg", {"history_iterations": []})
    assert "no snapshots" in note


def test_history_rows_follow_the_final_matching():
    true = torch.stack([torch.full((1, 12, 12), v) for v in (0.1, 0.5, 0.9)])
    answer = true[[2, 0, 1]]
    recon = Reconstruction(images=answer, history=[torch.rand(3, 1, 12, 12), answer])
    score = score_batch(recon.images, None, true, torch.zeros(3, dtype=torch.long))
    order = [item.recon_index for item in score.per_image]
    assert order == [1, 2, 0]
    assert torch.equal(history_in_true_order(recon, order)[-1], true)
    assert history_in_true_order(recon, None)[-1] is answer


def test_real_cifar_fixture_through_the_npz_source(probe, tmp_path: Path):
    fixtures = os.environ.get("FEDLEAK_FIXTURES")
    path = Path(fixtures or "/nonexistent") / "cifar10_test_first1000.npz"
    if not path.is_file():
        pytest.skip("set FEDLEAK_FIXTURES to the shared data folder to run real-image tests")
    assert run_cli("--attack", "probe", "--model", "lenet", "--dataset", "cifar10", "--source", "npz", "--path",
                   str(path), "--indices", "500", "999", "--device", "cpu", "--out", str(tmp_path)) == 0
    (observation,) = probe.seen
    assert (observation.model.in_channels, observation.model.image_size, observation.batch_size) == (3, 32, 2)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    with np.load(path) as data:
        assert metrics["true_labels"] == data["y"][[500, 999]].tolist()
    # Re-identification says against which images: the fixture's first 1000 (all of it), the same in every run.
    assert metrics["gallery_size"] == 1000 and metrics["gallery"].startswith("first 1000 of 1000 images of ")
    assert metrics["reconstructions"] == 2 and metrics["reidentified_precision"] is not None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--attack", "nope", *BASE, "--index", "0"), "unknown attack 'nope'"),
        (("--attack", "probe", "--model", "nope", "--dataset", "mnist", "--index", "0"), "unknown model 'nope'"),
        (("--attack", "probe", "--model", "lenet", "--dataset", "svhn", "--index", "0"), "dataset"),
        (("--attack", "probe", *BASE, "--index", "20"), "index 20 is out of range"),
        (("--attack", "probe", *BASE), "name the victim"),
        (("--attack", "probe", *BASE, "--index", "0", "--source", "npz", "--path", "/nonexistent.npz"),
         "no such file"),
        (("--attack", "probe", *BASE, "--image", "/nonexistent.png"), "--image needs --label"),
        (("--attack", "bare", *BASE, "--index", "0", "--iters", "5"), "--iters: attack 'bare' has no such setting"),
        (("--attack", "probe", *BASE, "--index", "0", "--param", "lr=1"), "--param lr: attack 'probe' has no such"),
        (("--attack", "probe", *BASE, "--index", "0", "--param", "iterations=many"), "not a valid int"),
        (("--attack", "probe", "--model", "lenet", "--dataset", "mnist", "--image-size", "30", "--index", "0"),
         "--model lenet: cannot build it"),
        (("--attack", "probe", *BASE, "--index", "0", "--defense", "prune,ratio=2"), "--defense: ratio:"),
        (("--attack", "probe", *BASE, "--index", "0", "--defense", "shuffle"), "--defense: kind:"),
        (("--attack", "probe", *BASE, "--index", "0", "--defense", "prune,0.5"), "is not KEY=VALUE"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(probe, argv, message, tmp_path: Path, capsys):
    assert run_cli(*argv, "--out", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fedleak attack: error:"), err
    assert message in err, err


def test_the_reconstruction_figure_puts_target_reconstruction_and_loss_curve_side_by_side(tmp_path: Path) -> None:
    """One figure, three panels in one row; the curve is the matching distance at the kept snapshots, so an iterative
    attack's diagnostics carry one finite distance per snapshot after the first (the start has no evaluation yet)."""
    from PIL import Image

    from fedleak.report.side_by_side import loss_curve

    out = tmp_path / "idlg"
    rc = run_cli("--attack", "idlg", "--model", "lenet", "--dataset", "mnist", "--split", "test", "--index", "0",
                 "--iters", "20", "--device", "cpu", "--out", str(out))
    assert rc == 0
    diagnostics = json.loads((out / "metrics.json").read_text())["diagnostics"]
    iterations, losses = loss_curve(diagnostics)
    assert len(diagnostics["history_losses"]) == len(diagnostics["history_iterations"]) >= 2
    assert len(losses) >= 2 and iterations == sorted(iterations)
    with Image.open(out / "reconstruction.png") as figure, Image.open(out / "target.png") as target:
        assert figure.width > 2 * figure.height        # one row of three panels, not a stack
        assert figure.width >= 3 * target.width        # the panels are larger than the old thumbnails
