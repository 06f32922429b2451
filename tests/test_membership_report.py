"""Membership in the report: side by side with reconstruction, per round on the accuracy's axis, in the frontier."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from fedleak.report import build_report
from fedleak.report.frontier import FRONTIER_COLUMNS, read_arm
from fedleak.report.membership import arm_membership, auc_per_round, client_membership, read_membership
from fedleak.types import membership_columns

#: (round, client, attack, auc, low, high, tpr@1%, true positives, members): client 0 is a hospital whose
#: reconstruction was skipped; client 1 a clinic that reconstruction attacked too.
ROWS = [
    (1, 0, "gradient_alignment", 0.52, 0.49, 0.55, 0.012, 12, 1000),
    (1, 0, "loss_difference", 0.55, 0.52, 0.58, 0.020, 20, 1000),
    (3, 0, "gradient_alignment", 0.51, 0.48, 0.54, 0.030, 30, 1000),
    (3, 0, "loss_difference", 0.50, 0.47, 0.53, 0.010, 10, 1000),
    (1, 1, "gradient_alignment", 1.00, 0.90, 1.00, 1.000, 1, 1),
]


def _write(run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "membership.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=membership_columns(), restval="")
        writer.writeheader()
        for r, c, attack, auc, low, high, tpr, hits, n in ROWS:
            writer.writerow({"round": r, "client": c, "attack": attack, "status": "ok", "auc": auc, "auc_low": low,
                             "auc_high": high, "tpr_at_1pct_fpr": tpr, "tpr_at_1pct_fpr_low": 0.0,
                             "tpr_at_1pct_fpr_high": 1.0, "true_positives_at_1pct_fpr": hits,
                             "false_positives_at_1pct_fpr": 0, "members": n, "non_members": n, "trained": n,
                             "pool": 1000, "threat": "the stated threat"})
        writer.writerow({"round": 3, "client": 1, "attack": "loss_difference", "status": "failed",
                         "reason": "boom", "members": 1, "non_members": 1})
    with (run_dir / "leakage.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["round", "client", "attack", "batch_size", "status", "reason", "psnr_per_image"])
        writer.writerow([1, 0, "rconv", 32, "skipped", "over max_images", ""])
        writer.writerow([1, 1, "rconv", 1, "ok", "", "40"])
    (run_dir / "rounds.csv").write_text("round,loss,accuracy\n1,2.0,0.5\n2,1.0,0.7\n3,0.5,0.9\n")
    (run_dir / "scenario.yaml").write_text(yaml.safe_dump({"name": "m", "training": {"rounds": 3}}))


def test_worst_case_per_client_and_per_round(tmp_path) -> None:
    _write(tmp_path)
    rows = read_membership(tmp_path / "membership.csv")
    clients = client_membership(rows)
    assert float(clients[0].worst_auc["auc"]) == 0.55 and int(clients[0].worst_auc["round"]) == 1
    assert float(clients[0].worst_tpr["tpr_at_1pct_fpr"]) == 0.03  # from round 3: each figure its own worst row
    assert clients[1].failed == 1 and clients[1].updates == 1
    assert auc_per_round(rows)[0] == [(1, 0.55, 0.52, 0.58), (3, 0.51, 0.48, 0.54)]
    assert arm_membership(rows) == (1.0, 1.0)


def test_the_report_shows_every_client_side_by_side_and_the_figure(tmp_path) -> None:
    _write(tmp_path)
    page = build_report(tmp_path).read_text()
    side = page[page.index("reconstruction and membership side by side"):]
    table = side[: side.index("</table>")]
    assert "not feasible: every reconstruction attack skipped" in table  # client 0, with its membership figure
    assert "0.550 [0.520, 0.580]" in table and "the stated threat" in side
    assert "40.00 dB" in table  # client 1's reconstruction beside its membership
    assert (tmp_path / "figures" / "membership_and_accuracy.png").is_file()


def test_frontier_gains_the_worst_clients_membership(tmp_path) -> None:
    arm_dir = tmp_path / "arms" / "none"
    _write(arm_dir)
    arm = read_arm(arm_dir)
    assert {"membership_auc", "membership_tpr_at_1pct_fpr"} <= set(FRONTIER_COLUMNS)
    assert arm.row()["membership_auc"] == pytest.approx(1.0)
    assert arm.row()["membership_tpr_at_1pct_fpr"] == pytest.approx(1.0)
    empty = read_arm(_bare(tmp_path / "arms" / "bare"))
    assert empty.membership_auc is None and empty.membership_tpr_at_1pct_fpr is None


def _bare(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "rounds.csv").write_text("round,loss,accuracy\n1,2.0,0.5\n")
    return path
