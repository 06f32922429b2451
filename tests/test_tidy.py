"""images.csv and the snake_case CSVs: the per-image facts of leakage.csv spread into one row per true image."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from fedleak.report import RunWriter, build_report
from fedleak.report.sections import CLIENT_COLUMNS
from fedleak.report.tidy import IMAGE_COLUMNS, write_images_table
from fedleak.types import LeakageRecord


def _record(client: int, attack: str, psnrs: str, baselines: str, flags: str, **changes) -> LeakageRecord:
    fields = dict(round=2, client=client, attack=attack, batch_size=len(psnrs.split()), local_steps=1, lr=0.1,
                  update_kind="gradient", defense="none", status="ok", reason="", psnr=10.0, ssim=0.5, mse=0.1,
                  label_accuracy=1.0, success=0.0, seconds=1.5, labels_known=False, local_hparams_known=True,
                  batch_size_known=True, psnr_per_image=psnrs, baseline_psnr=9.0, baseline_psnr_per_image=baselines,
                  reidentified=0.5, reidentified_per_image=flags, gallery="mnist:first-1000", gallery_size=1000,
                  reconstructions=2)
    fields.update(changes)
    return LeakageRecord(**fields)


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_one_row_per_true_image_with_every_per_image_score(tmp_path: Path) -> None:
    run = tmp_path / "study" / "arms" / "prune"
    writer = RunWriter(run)
    writer.append_leakage(_record(0, "idlg", "30.000 - inf", "9.000 8.000 7.000", "1 0 1"))
    writer.append_leakage(_record(1, "rconv", "", "", "", status="skipped", reason="over max_images", psnr=None,
                                  ssim=None, mse=None, label_accuracy=None, success=None, reidentified=None,
                                  gallery="", gallery_size=None, reconstructions=None))
    rows = _read(write_images_table(run))
    assert list(rows[0]) == IMAGE_COLUMNS
    assert [(r["run"], r["arm"], r["round"], r["client"], r["attack"], r["image"]) for r in rows] == [
        ("study", "prune", "2", "0", "idlg", "0"), ("study", "prune", "2", "0", "idlg", "1"),
        ("study", "prune", "2", "0", "idlg", "2"), ("study", "prune", "2", "1", "rconv", "")]
    first, missed, exact, skipped = rows
    assert first["psnr"] == "30.0" and math.isclose(float(first["mse"]), 1e-3) and first["recovered"] == "true"
    assert first["baseline_psnr"] == "9.0" and first["reidentified"] == "true" and first["gallery_size"] == "1000"
    # Not recovered: empty scores (never a made-up number), the fact stated in its own column.
    assert missed["psnr"] == "" and missed["mse"] == "" and missed["recovered"] == "false"
    assert missed["reidentified"] == "false" and missed["baseline_psnr"] == "8.0"
    assert exact["psnr"] == "inf" and exact["mse"] == "0.0"
    assert skipped["status"] == "skipped" and skipped["reason"] == "over max_images" and skipped["psnr"] == ""
    assert skipped["dp_epsilon"] == "" and skipped["gallery_size"] == ""


def test_the_report_writes_images_csv_and_snake_case_clients_csv(tmp_path: Path) -> None:
    writer = RunWriter(tmp_path)
    writer.append_leakage(_record(0, "idlg", "30.000 12.000", "9.000 8.000", "1 0"))
    writer.append_leakage(_record(0, "rconv", "5.000 40.000", "9.000 8.000", "0 1"))
    page = build_report(tmp_path).read_text()
    assert len(_read(tmp_path / "images.csv")) == 4
    clients = _read(tmp_path / "clients.csv")
    assert list(clients[0]) == CLIENT_COLUMNS and all(c == c.lower() and " " not in c for c in CLIENT_COLUMNS)
    assert clients[0]["dp_epsilon"] == "" and clients[0]["dp_unit"] == "" and "–" not in "".join(clients[0].values())
    # The worst case per image is the best attack on it: 30 and 40 dB, whose median (even count: the worse) is 30.
    assert float(clients[0]["worst_median_psnr"]) == 30.0
    assert "worst-case PSNR (dB)" in page  # the page keeps its human headings
    attacks = _read(tmp_path / "attacks_per_client.csv")
    assert {"median_psnr", "failure_reasons"} <= set(attacks[0])


def test_images_csv_never_follows_a_link_out_of_the_run_folder(tmp_path: Path) -> None:
    import pytest

    from fedleak.errors import UserError

    run, outside = tmp_path / "run", tmp_path / "elsewhere.csv"
    RunWriter(run).append_leakage(_record(0, "idlg", "30.000", "9.000", "1"))
    outside.write_text("keep me\n")
    (run / "images.csv").symlink_to(outside)
    with pytest.raises(UserError, match="images.csv"):
        write_images_table(run)
    assert outside.read_text() == "keep me\n"
