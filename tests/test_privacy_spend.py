"""ε is the spend at the end: every participant's cumulative ε after each round in rounds.csv, attacked or not; a
client's and an arm's ε is what was spent after the last round, not the largest ε among attacked rows."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from fedleak.defenses import DpSgdDefense
from fedleak.privacy import PrivacySpent
from fedleak.report.frontier import read_arm
from fedleak.report.privacy import arm_spend, spend_at_end, spend_cells
from fedleak.report.tables import read_rounds
from fedleak.report.writer import RunWriter
from fedleak.training import LocalTraining

PLAN = LocalTraining("gradient", batch_size=4, local_steps=1, local_epochs=1, lr=0.1)
DEFENSE = DpSgdDefense(noise_multiplier=1.0)
SHARD = 20


def _spent(rounds: int) -> PrivacySpent:
    return DEFENSE.spent(PLAN, SHARD, rounds)


def _public(spent: PrivacySpent | None) -> dict:
    """The privacy fields of a reply's public metadata, as ``server.observations.dp_fields`` reads them."""
    if spent is None:
        return {"dp_epsilon": None, "dp_delta": None, "dp_unit": ""}
    return {"dp_epsilon": spent.epsilon, "dp_delta": spent.delta, "dp_unit": spent.unit}


def _write_dp_arm(arm_dir: Path) -> None:
    """Three rounds; client 0 trains under DP-SGD in every round, client 1 without DP; the attack ran only on
    round 1's updates. rounds.csv is written as the server's tap writes it."""
    writer = RunWriter(arm_dir)
    for server_round in (1, 2, 3):
        row = {"round": server_round, "loss": 1.0, "accuracy": 0.5, "participants": "0 1",
               **spend_cells({0: _public(_spent(server_round)), 1: _public(None)})}
        writer.append_round(row)
    header = ["round", "client", "attack", "batch_size", "status", "psnr_per_image", "dp_epsilon", "dp_delta",
              "dp_unit"]
    with (arm_dir / "leakage.csv").open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(header)
        out.writerow([1, 0, "idlg", 4, "ok", "12", _spent(1).epsilon, _spent(1).delta, "record"])
        out.writerow([1, 1, "idlg", 4, "ok", "14", "", "", ""])
    scenario = {"training": {"defense": DEFENSE.model_dump(), "rounds": 3}, "output": {"success_psnr": 30.0}}
    (arm_dir / "scenario.yaml").write_text(yaml.safe_dump(scenario))


def test_rounds_csv_carries_every_participants_cumulative_epsilon(tmp_path):
    _write_dp_arm(tmp_path)
    rounds = read_rounds(tmp_path / "rounds.csv").rows
    assert [r["dp_unit"] for r in rounds] == ["record -"] * 3  # aligned with participants "0 1"
    at_end = spend_at_end(rounds)
    assert set(at_end) == {0}  # client 1 has no DP guarantee
    assert at_end[0].round == 3 and at_end[0].epsilon == pytest.approx(_spent(3).epsilon, rel=1e-12)
    assert at_end[0].delta == DEFENSE.delta and at_end[0].unit == "record"


def test_a_three_round_dp_sgd_arm_attacked_only_in_round_1_reports_the_spend_at_the_end(tmp_path):
    _write_dp_arm(tmp_path / "dp")
    arm = read_arm(tmp_path / "dp")
    first, last = _spent(1).epsilon, _spent(3).epsilon
    assert last > first * 1.3  # three rounds cost clearly more than one
    assert arm.dp_epsilon == pytest.approx(last, rel=1e-12) and arm.dp_unit == "record"


def test_an_older_run_without_epsilon_in_rounds_csv_falls_back_to_its_rows():
    rounds = [{"round": 1, "participants": "0"}]
    leakage = [{"dp_epsilon": 1.5, "dp_unit": "update"}, {"dp_epsilon": 2.5, "dp_unit": "update"}]
    assert arm_spend(rounds, leakage) == (2.5, "update")


def test_the_report_shows_each_clients_spend_at_the_end(tmp_path):
    from fedleak.report.build import build_report

    _write_dp_arm(tmp_path)
    build_report(tmp_path)
    with (tmp_path / "clients.csv").open(newline="") as handle:
        clients = {row["client"]: row for row in csv.DictReader(handle)}
    assert float(clients["0"]["dp_epsilon"]) == pytest.approx(_spent(3).epsilon, abs=1e-3)  # written rounded
    assert clients["0"]["dp_unit"] == "record" and float(clients["0"]["dp_delta"]) == DEFENSE.delta
    assert clients["1"]["dp_epsilon"] == ""
