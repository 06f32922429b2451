"""Whole runs through Flower's real simulation runtime (clients on Ray), plus the run's own health checks.

Ray startup and torch imports in its workers take tens of seconds on two cores, so only two tests start Ray: one
with the in-process attack executor and a failing attack, one running scenarios/smoke.yaml with the Ray pool.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml

from fedleak.attacks import ATTACKS, Attack, register_attack
from fedleak.config.schema import AttackConfig
from fedleak.drivers.scenarios import load_scenario, parse_scenario
from fedleak.drivers.simulation import check_run, simulate
from fedleak.server.ledger import RunLedger
from fedleak.server.schedule import planned_attacks
from fedleak.types import Observation, Reconstruction

ROOT = Path(__file__).resolve().parents[1]

#: (round, client) -> share of exact zeros in the update the attack observed (in-process executor only).
ZERO_SHARE: dict[tuple[int, int], float] = {}

if "test_sim_noise" not in ATTACKS:

    @register_attack("test_sim_noise")
    class NoiseAttack(Attack):
        """Seeded noise of the observed batch's shape (plumbing only: it scores low, as it should)."""

        def reconstruct(self, observation: Observation) -> Reconstruction:
            flat = torch.cat([v.reshape(-1) for v in observation.gradient().values()])
            where = (observation.metadata["round"], observation.metadata["client"])
            ZERO_SHARE[where] = float((flat == 0).double().mean())
            g = torch.Generator().manual_seed(self.seed)
            spec, b = observation.model, observation.batch_size or 1
            return Reconstruction(images=torch.rand(b, spec.in_channels, spec.image_size, spec.image_size,
                                                    generator=g))

    @register_attack("test_sim_raises")
    class RaisingAttack(Attack):
        def reconstruct(self, observation: Observation) -> Reconstruction:
            raise RuntimeError("deliberate failure")


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_in_process_executor_run_survives_a_failing_attack(tmp_path, tmp_path_factory):
    scenario = parse_scenario({
        "name": "inproc", "data": {"dataset": "mnist", "eval_fraction": 0.1},
        "clients": {"count": 2, "overrides": [
            {"client": 0, "batch_size": 1, "defense": {"kind": "dp_sgd", "noise_multiplier": 1.0}},
            {"client": 1, "defense": {"kind": "prune", "ratio": 0.5}},
        ]},
        "training": {"rounds": 2, "batch_size": 3, "lr": 0.1},
        "attacks": [{"name": "test_sim_noise"}, {"name": "test_sim_raises", "rounds": [2], "clients": [1]}],
    })
    ZERO_SHARE.clear()
    run_dir = tmp_path / "run"
    result = simulate(scenario, run_dir=run_dir, executor="local", progress=False,
                      ray_temp_dir=tmp_path_factory.mktemp("ray"))
    assert result.ok, result.problems

    leakage = _rows(run_dir / "leakage.csv")
    keys = sorted((int(r["round"]), int(r["client"]), r["attack"]) for r in leakage)
    assert keys == [(1, 0, "test_sim_noise"), (1, 1, "test_sim_noise"), (2, 0, "test_sim_noise"),
                    (2, 1, "test_sim_noise"), (2, 1, "test_sim_raises")]
    failed = [r for r in leakage if r["attack"] == "test_sim_raises"]
    assert failed[0]["status"] == "failed" and "deliberate failure" in failed[0]["reason"]
    noise = [r for r in leakage if r["attack"] == "test_sim_noise"]
    assert {int(r["client"]): int(r["batch_size"]) for r in noise} == {0: 1, 1: 3}
    assert all(r["status"] == "ok" and float(r["psnr"]) < 15 for r in noise)  # noise is far from the batch
    # Each client's defense ran inside Flower's client runtime (the mod, or Opacus in the Ray worker) and is named in
    # its rows; the server saw the pruned update; DP-SGD's ε grows with the rounds.
    assert {int(r["client"]): r["defense"] for r in noise} == {0: "dp_sgd(max_grad_norm=1, noise_multiplier=1, "
                                                                   "delta=1e-05)", 1: "prune(ratio=0.5)"}
    assert ZERO_SHARE[(1, 1)] >= 0.5 > ZERO_SHARE[(1, 0)]
    epsilons = {int(r["round"]): float(r["dp_epsilon"]) for r in noise if r["client"] == "0"}
    assert 0 < epsilons[1] < epsilons[2] and all(r["dp_epsilon"] == "" for r in noise if r["client"] == "1")

    rounds = _rows(run_dir / "rounds.csv")
    assert [int(r["round"]) for r in rounds] == [1, 2]
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 and int(r["clients"]) == 2 for r in rounds)
    assert (run_dir / "report.html").is_file() and (run_dir / "scenario.yaml").is_file()
    assert result.attacks_finished == 5 and result.attacks_failed == 1
    assert result.attacks_finished == len(planned_attacks(scenario))  # the progress bar's scheduled total
    run = json.loads((run_dir / "run.json").read_text())
    assert run["kind"] == "simulate" and run["status"] == "complete" and run["seed"] == scenario.seed
    assert run["extra"]["scenario"] == "inproc" and run["finished_at"] >= run["started_at"]


@pytest.mark.slow
def test_smoke_scenario_on_ray_pool(tmp_path, tmp_path_factory):
    raw = yaml.safe_load((ROOT / "scenarios" / "smoke.yaml").read_text())
    missing = [a["name"] for a in raw.get("attacks", []) if a["name"] not in ATTACKS]
    if missing:
        pytest.skip(f"smoke.yaml needs attacks not registered in this checkout: {', '.join(missing)}")
    scenario = load_scenario(ROOT / "scenarios" / "smoke.yaml")
    names = {attack.name for attack in scenario.attacks}
    # One extra job that cannot finish in time: the pool must stop it, replace its worker and go on.
    # Signed Adam (Inverting Gradients) has no early stop and keeps moving, so a million iterations cannot end in time.
    endless = AttackConfig(name="inverting_gradients", rounds=[1], clients=[1],
                           params={"iterations": 10**6, "restarts": 1, "max_redraws": 0})
    scenario = scenario.model_copy(update={
        "attacks": [*scenario.attacks, endless],
        "executor": scenario.executor.model_copy(update={"timeout_s": 10.0}),
    })
    run_dir = tmp_path / "smoke"
    result = simulate(scenario, run_dir=run_dir, base_dir=ROOT / "scenarios", executor="ray", progress=False,
                      ray_temp_dir=tmp_path_factory.mktemp("ray"))
    assert result.ok, result.problems
    leakage = _rows(run_dir / "leakage.csv")
    expected = {(r, c, a) for r in range(1, scenario.training.rounds + 1) for c in range(scenario.clients.count)
                for a in names} | {(1, 1, "inverting_gradients")}
    assert {(int(r["round"]), int(r["client"]), r["attack"]) for r in leakage} == expected
    assert len(leakage) == len(expected)
    stopped = [r for r in leakage if r["attack"] == "inverting_gradients"]
    assert stopped[0]["status"] == "failed" and stopped[0]["reason"].startswith("timeout"), stopped
    smoke_rows = [r for r in leakage if r["attack"] in names]
    assert any(r["status"] == "ok" and r["psnr"] for r in smoke_rows), "no smoke attack produced images"
    assert len(_rows(run_dir / "rounds.csv")) == scenario.training.rounds


def test_check_run_reports_missing_rounds_and_clients():
    scenario = parse_scenario({"data": {"dataset": "mnist"}, "clients": {"count": 3}, "training": {"rounds": 3}})
    ledger = RunLedger(clients_per_round={1: {0, 1, 2}, 2: {0, 2}}, rounds_logged={1, 2},
                       reply_errors=["round 2: client crashed"])
    problems = check_run(scenario, ledger)
    assert "client error: round 2: client crashed" in problems
    assert "round 2: no reply from clients [1]" in problems
    assert "round 3: no train replies" in problems
    assert "round 3: not completed (no rounds.csv row)" in problems
    complete = RunLedger(clients_per_round={r: {0, 1, 2} for r in (1, 2, 3)}, rounds_logged={1, 2, 3})
    assert check_run(scenario, complete) == []


def test_cli_reports_scenario_errors_on_one_line(tmp_path, capsys):
    from fedleak.drivers.cli.main import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {dataset: mnist}\nclients: {count: 2}\ntraining: {rounds: 0}\n")
    assert main(["simulate", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "training.rounds" in err


@pytest.mark.slow
def test_epoch_run_samples_clients_accounts_their_rounds_and_writes_checkpoints(tmp_path, tmp_path_factory):
    from fedleak.clients.update import LocalTraining, privacy_spent
    from fedleak.participation import rounds_taken_part, sampled_clients

    scenario = parse_scenario({
        "name": "epochs", "seed": 1, "data": {"dataset": "mnist", "eval_fraction": 0.1},
        "clients": {"count": 6, "per_round": 3, "partition": {"kind": "sizes", "sizes": [20, 20, 20, 20, 20, 6]},
                    "overrides": [{"client": 0, "defense": {"kind": "dp_sgd", "noise_multiplier": 1.0}}]},
        "training": {"rounds": 3, "update": "epochs", "local_epochs": 2, "batch_size": 4, "lr": 0.05,
                     "model": "lenet", "activation": "relu", "init": "default"},
        "attacks": [{"name": "test_sim_noise", "max_images": 10}],
        "output": {"checkpoints": True},
    })
    run_dir = tmp_path / "run"
    result = simulate(scenario, run_dir=run_dir, executor="local", progress=False,
                      ray_temp_dir=tmp_path_factory.mktemp("ray"))
    assert result.ok, result.problems

    draws = {r: sampled_clients(6, 3, 1, r) for r in (1, 2, 3)}
    rounds = _rows(run_dir / "rounds.csv")
    assert {int(r["round"]): [int(c) for c in r["participants"].split()] for r in rounds} == draws
    leakage = _rows(run_dir / "leakage.csv")
    assert sorted((int(r["round"]), int(r["client"])) for r in leakage) == sorted(
        (r, c) for r, chosen in draws.items() for c in chosen)
    for row in leakage:
        small = row["client"] == "5"  # 6 images: attacked; the others trained on 20, over max_images=10
        assert row["status"] == ("ok" if small else "skipped"), row
        assert small or "max_images=10" in row["reason"]
        assert row["update_kind"] == "epochs" and int(row["local_steps"]) == (4 if small else 10)
    # Client 0's ε counts only the rounds it took part in, and equals the accountant's figure for that count.
    plan = LocalTraining("epochs", 4, 1, 2, 0.05)
    defense = scenario.client_defense(0)
    for row in (r for r in leakage if r["client"] == "0"):
        taken = len(rounds_taken_part(6, 3, 1, 0, int(row["round"])))
        assert float(row["dp_epsilon"]) == pytest.approx(privacy_spent(defense, plan, 20, taken).epsilon)
        assert row["dp_unit"] == "record"

    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert checkpoints == ["round_000.pt", "round_001.pt", "round_002.pt", "round_003.pt"]
    first, last = (torch.load(run_dir / "checkpoints" / n, weights_only=True) for n in checkpoints[::3])
    assert first.keys() == last.keys() and any(not torch.equal(first[k], last[k]) for k in first)


def test_cli_refuses_an_out_folder_that_already_holds_a_run(tmp_path, capsys):
    from fedleak.drivers.cli.main import main

    out = tmp_path / "run"
    out.mkdir()
    (out / "leakage.csv").write_text("round,client\n1,0\n")
    assert main(["simulate", str(ROOT / "scenarios" / "smoke.yaml"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "--out" in err[-1] and "already holds fedleak output (leakage.csv)" in err[-1]
    assert (out / "leakage.csv").read_text() == "round,client\n1,0\n"  # nothing already written is lost


@pytest.mark.slow
def test_a_run_repeated_with_the_same_seed_gives_identical_psnrs(tmp_path, tmp_path_factory):
    scenario = parse_scenario({
        "name": "repeat", "seed": 5, "data": {"dataset": "mnist", "eval_fraction": 0.1},
        "clients": {"count": 2, "overrides": [{"client": 0, "batch_size": 1}]},
        "training": {"rounds": 2, "batch_size": 2, "lr": 0.1, "model": "lenet", "init": "paper"},
        "attacks": [{"name": "idlg", "params": {"iterations": 15}}, {"name": "rconv"}],
        "output": {"save_images": False},
    })
    tables = []
    for attempt in ("first", "second"):
        run_dir = tmp_path / attempt
        result = simulate(scenario, run_dir=run_dir, executor="local", progress=False, report=False,
                          ray_temp_dir=tmp_path_factory.mktemp("ray"))
        assert result.ok, result.problems
        rows = _rows(run_dir / "leakage.csv")
        tables.append(sorted((r["round"], r["client"], r["attack"], r["status"], r["psnr_per_image"]) for r in rows))
    assert len(tables[0]) == 8 and all(row[3] == "ok" for row in tables[0])
    assert tables[0] == tables[1]
