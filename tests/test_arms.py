"""Defense arms: the frontier numbers from hand-written CSVs, the arms' validation, and one real two-arm run."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import yaml

from fedleak.drivers.arms import arm_scenario, plan
from fedleak.drivers.cli.main import main
from fedleak.drivers.scenarios import parse_scenario
from fedleak.report.frontier import FRONTIER_COLUMNS, read_arm, worst_case

LEAKAGE_HEADER = ["round", "client", "attack", "batch_size", "status", "psnr_per_image", "dp_epsilon", "dp_unit"]

#: Two updates per round; client 0 has two images. By hand, per image, the best attack on that update:
#: (1, 0): idlg 20 40, dlg 35 10 → 35 40 · (1, 1): inf (rconv failed) · (2, 0): both failed → 2 misses ·
#: (2, 1): idlg left its image unmatched, dlg 12 → 12. Skipped attacks did not run and count nothing.
LEAKAGE_ROWS = [
    [1, 0, "idlg", 2, "ok", "20 40", 1.5, "update"],
    [1, 0, "dlg", 2, "ok", "35 10", 1.5, "update"],
    [1, 1, "idlg", 1, "ok", "inf", 1.5, "update"],
    [1, 1, "rconv", 1, "failed", "", 1.5, "update"],
    [2, 0, "idlg", 2, "failed", "", 2.5, "update"],
    [2, 0, "dlg", 2, "failed", "", 2.5, "update"],
    [2, 1, "idlg", 1, "ok", "-", 2.0, "update"],
    [2, 1, "dlg", 1, "ok", "12", 2.0, "update"],
    [2, 1, "rgap", 1, "skipped", "", 2.0, "update"],
    [1, 2, "idlg", 64, "skipped", "", 1.5, "update"],  # an update over the cap, never attacked: not counted
]

BASE = {
    "name": "cmp",
    "data": {"dataset": "mnist", "eval_fraction": 0.1},
    "clients": {"count": 2},
    "training": {"rounds": 1, "batch_size": 1},
    "arms": [{"name": "none", "defense": {"kind": "none"}},
             {"name": "prune", "defense": {"kind": "prune", "ratio": 0.5}, "training": {"lr": 0.05}}],
}


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _write_arm(arm_dir: Path, leakage: list[list], rounds: list[list], defense: dict, header=LEAKAGE_HEADER,
               planned: int = 2) -> None:
    _write_csv(arm_dir / "leakage.csv", header, leakage)
    _write_csv(arm_dir / "rounds.csv", ["round", "loss", "accuracy"], rounds)
    scenario = {"training": {"defense": defense, "rounds": planned}, "output": {"success_psnr": 30.0}}
    (arm_dir / "scenario.yaml").write_text(yaml.safe_dump(scenario))


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_frontier_numbers_by_hand(tmp_path):
    arm_dir = tmp_path / "arms" / "ldp"
    _write_arm(arm_dir, LEAKAGE_ROWS, [[1, 2.0, 0.5], [2, 1.5, 0.75]],
               {"kind": "local_dp", "clipping_norm": 1.0, "epsilon": 2.0, "delta": 1e-5})
    arm = read_arm(arm_dir)
    assert arm.attacked_images == 6 and arm.skipped_attacks == 2
    # Over all six images: two failed (not recovered, −∞), 12, 35, 40, ∞ — the worse middle image, never a mean.
    assert arm.worst_median_psnr == 12.0
    assert arm.success_rate == pytest.approx(3 / 6)  # 35, 40, inf; the two failed images count as misses
    assert arm.final_accuracy == pytest.approx(0.75)
    assert (arm.dp_epsilon, arm.dp_unit) == (2.5, "update")
    assert arm.defense.startswith("local_dp(")
    assert arm.leakage_per_round == [(1, 40.0), (2, -math.inf)]  # round 2: two of three images not recovered
    assert arm.accuracy_per_round == [(1, 0.5), (2, 0.75)]


def test_worst_case_is_the_best_attack_per_image_not_per_row():
    rows = [dict(zip(LEAKAGE_HEADER, r, strict=True)) for r in LEAKAGE_ROWS]
    worst = worst_case(rows)
    # Neither attack's row alone reaches (35, 40); the best row by mean (idlg, 30 dB) would give (20, 40).
    assert worst[(1, 0)] == [35.0, 40.0]
    assert worst[(2, 0)] == [None, None]
    assert worst[(2, 1)] == [12.0] and (1, 2) not in worst


def test_old_run_without_dp_unit_and_last_round_unevaluated(tmp_path):
    header = [h for h in LEAKAGE_HEADER if h != "dp_unit"]
    rows = [[r, c, "idlg", 1, "ok", "31", "", ] for r, c in ((1, 0), (2, 0))]
    _write_arm(tmp_path / "a", rows, [[1, 2.0, 0.4], [2, "", ""]], {"kind": "none"}, header=header)
    arm = read_arm(tmp_path / "a")
    assert (arm.dp_epsilon, arm.dp_unit) == (None, "")
    assert arm.final_accuracy is None  # the last round has no accuracy: no older round stands in for it
    assert arm.worst_median_psnr == 31.0 and arm.success_rate == 1.0


def test_build_frontier_writes_table_in_arm_order_and_page(tmp_path):
    (tmp_path / "scenario.yaml").write_text(yaml.safe_dump({"arms": [{"name": "z"}, {"name": "a"}, {"name": "gone"}]}))
    _write_arm(tmp_path / "arms" / "z", LEAKAGE_ROWS, [[1, 1.0, 0.6]], {"kind": "none"}, planned=3)
    _write_arm(tmp_path / "arms" / "a", [[1, 0, "idlg", 1, "ok", "8", "", ""]], [[1, 1.0, 0.7]],
               {"kind": "prune", "ratio": 0.5}, planned=1)
    assert main(["report", str(tmp_path)]) == 0  # the top folder: each arm's report, then the comparison
    rows = _read(tmp_path / "frontier.csv")
    assert list(rows[0]) == FRONTIER_COLUMNS
    assert [r["arm"] for r in rows] == ["z", "a"]
    assert rows[1]["defense"] == "prune(ratio=0.5)" and float(rows[1]["worst_median_psnr"]) == 8.0
    assert rows[1]["dp_epsilon"] == "" and float(rows[1]["success_rate"]) == 0.0
    page = (tmp_path / "report.html").read_text()
    assert page.index("<img") < page.index("<table")  # the frontier figure comes first
    assert "arms/z/report.html" in page and "gone" in page
    assert "Arm &#x27;z&#x27; is incomplete: 1 of 3 rounds" in page and "Arm &#x27;a&#x27; is incomplete" not in page
    assert (tmp_path / "frontier.png").is_file() and (tmp_path / "arms" / "a" / "report.html").is_file()
    images = _read(tmp_path / "images.csv")  # the arms' per-image rows together, each named by its arm
    assert ("a", "0", "8.0") in {(r["arm"], r["image"], r["psnr"]) for r in images}
    assert {r["arm"] for r in images} == {"z", "a"} and {r["run"] for r in images} == {tmp_path.name}


def test_arm_scenario_keeps_the_federation_and_sets_the_defense():
    scenario = parse_scenario(BASE)
    arms = plan(scenario, Path("out"))
    assert [a.run_dir for a in arms] == [Path("out/arms/none"), Path("out/arms/prune")]
    prune = arm_scenario(scenario, scenario.arms[1])
    assert prune.arms == [] and prune.name == "cmp-prune"
    assert prune.training.defense.kind == "prune" and prune.training.lr == 0.05
    assert all(prune.client_defense(c).kind == "prune" for c in range(2))
    assert (prune.seed, prune.data, prune.clients, prune.attacks) == (scenario.seed, scenario.data,
                                                                      scenario.clients, scenario.attacks)


@pytest.mark.parametrize(("arms", "names"), [
    ([{"defense": {"kind": "none"}}], "arms[0].name"),
    ([{"name": "x", "defense": {"kind": "none"}}, {"name": "x", "defense": {"kind": "none"}}], "duplicate arm name"),
    ([{"name": "x", "defense": {"kind": "none"}, "training": {"lrr": 1}}], "arms[0].training"),
    ([{"name": "x", "defense": {"kind": "none"}, "training": {"lr": -1}}], "lr"),
])
def test_bad_arms_are_one_line_exit_2_nothing_written(tmp_path, capsys, arms, names):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**BASE, "arms": arms}))
    out = tmp_path / "out"
    assert main(["simulate", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and names in err, err
    assert not out.exists()


@pytest.mark.slow
def test_two_arms_run_each_into_its_own_run_directory(tmp_path):
    raw = {**BASE, "attacks": [{"name": "idlg", "params": {"iterations": 5}}],
           "executor": {"kind": "local", "timeout_s": 120}, "output": {"save_images": False}}
    path = tmp_path / "arms.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "run"
    assert main(["simulate", str(path), "--out", str(out), "--executor", "local", "--set", "training.lr=0.05"]) == 0
    # The run's scenario.yaml is the resolved one, the override included, at the top and in every arm.
    assert yaml.safe_load((out / "scenario.yaml").read_text())["training"]["lr"] == 0.05
    assert yaml.safe_load((out / "arms" / "prune" / "scenario.yaml").read_text())["training"]["lr"] == 0.05
    for name, kind in (("none", "none"), ("prune", "prune(ratio=0.5)")):
        leakage = _read(out / "arms" / name / "leakage.csv")
        assert {r["defense"] for r in leakage} == {kind} and len(leakage) == 2  # one round, two clients
        assert (out / "arms" / name / "report.html").is_file()
    rows = _read(out / "frontier.csv")
    assert [r["arm"] for r in rows] == ["none", "prune"]
    assert all(r["final_accuracy"] and r["worst_median_psnr"] for r in rows)
    assert (out / "report.html").is_file() and (out / "frontier.png").is_file()
    images = list(csv.DictReader((out / "images.csv").open()))  # every arm's per-image rows, named by arm
    assert {r["arm"] for r in images} == {"none", "prune"} and {r["run"] for r in images} == {"run"}
    top = json.loads((out / "run.json").read_text())
    assert top["kind"] == "arms" and top["status"] == "complete" and top["extra"]["arms"] == ["none", "prune"]
    assert top["command"][:2] == ["fedleak", "simulate"]
    for name in ("none", "prune"):
        arm = json.loads((out / "arms" / name / "run.json").read_text())
        assert arm["kind"] == "simulate" and arm["status"] == "complete" and arm["command"] == top["command"]
