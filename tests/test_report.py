"""Run directory writer, grids, figures and report.html: append-only, partial runs, failed-only runs."""

from __future__ import annotations

import base64
import csv
import math
import re
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fedleak.config.schema import Scenario
from fedleak.drivers.cli.main import main as cli_main
from fedleak.report import RunWriter, build_report, grid
from fedleak.report.images import MIN_DISPLAY_SIDE
from fedleak.report.tables import read_leakage, read_rounds, summarize
from fedleak.report.writer import image_name, parse_image_name
from fedleak.types import LeakageRecord, ThreatModel, columns

SCENARIO = {
    "name": "unit",
    "data": {"dataset": "mnist"},
    "clients": {"count": 2, "overrides": [{"client": 1, "batch_size": 4, "lr": 0.05}]},
    "training": {"rounds": 2, "batch_size": 1},
    "attacks": [{"name": "dlg", "params": {"iterations": 5}}],
}


def record(round: int, client: int, attack: str = "dlg", psnr: float | None = 25.0, **changes) -> LeakageRecord:
    failed = psnr is None
    fields = dict(
        round=round, client=client, attack=attack, batch_size=1 + 3 * client, local_steps=1, lr=0.1,
        update_kind="gradient", defense="none", status="failed" if failed else "ok",
        reason="diverged: non-finite pixels" if failed else "", psnr=psnr, ssim=None if failed else 0.7,
        mse=None if failed else 10 ** (-psnr / 10), label_accuracy=None if failed else 1.0,
        success=None if failed else float(psnr >= 30), seconds=0.5, labels_known=False, local_hparams_known=True,
        batch_size_known=True, psnr_per_image="" if failed else f"{psnr}",
    )
    fields.update(changes)
    return LeakageRecord(**fields)


@pytest.fixture
def scenario() -> Scenario:
    return Scenario.model_validate(SCENARIO)


def test_leakage_csv_has_header_once_and_round_trips_types(tmp_path: Path):
    writer = RunWriter(tmp_path / "run")
    writer.append_leakage(record(1, 0, psnr=31.5))
    writer.append_leakage(record(1, 1, psnr=None))
    writer.append_leakage(record(2, 0, psnr=float("inf")))
    lines = (tmp_path / "run" / "leakage.csv").read_text().splitlines()
    assert lines[0].split(",") == columns()
    assert sum(line.startswith("round,") for line in lines) == 1
    rows = read_leakage(tmp_path / "run" / "leakage.csv").rows
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]
    assert rows[0]["psnr"] == 31.5 and rows[0]["labels_known"] is False and rows[0]["client"] == 0
    assert rows[1]["psnr"] is None and rows[1]["reason"] == "diverged: non-finite pixels"
    assert rows[2]["psnr"] == float("inf")


def test_rows_written_from_many_threads_stay_whole(tmp_path: Path):
    writer = RunWriter(tmp_path)
    threads = [threading.Thread(target=lambda c=c: [writer.append_leakage(record(r, c)) for r in range(1, 21)])
               for c in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    table = read_leakage(tmp_path / "leakage.csv")
    assert len(table.rows) == 80 and table.skipped == 0


def test_rounds_csv_widens_its_header_without_losing_rows(tmp_path: Path):
    writer = RunWriter(tmp_path)
    writer.append_round({"round": 1, "loss": 2.3, "seconds": 1.0})
    writer.append_round({"round": 2, "loss": 2.0, "accuracy": 0.31, "seconds": 0.9})
    with (tmp_path / "rounds.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["round", "loss", "seconds", "accuracy"]
    assert [r["accuracy"] for r in rows] == ["", "0.31"]
    assert read_rounds(tmp_path / "rounds.csv").rows[1]["accuracy"] == pytest.approx(0.31)
    with pytest.raises(ValueError, match="round"):
        writer.append_round({"loss": 1.0})


def test_scenario_yaml_is_the_resolved_scenario(tmp_path: Path, scenario: Scenario):
    path = RunWriter(tmp_path).write_scenario(scenario)
    import yaml

    assert Scenario.model_validate(yaml.safe_load(path.read_text())) == scenario


def test_grid_places_true_above_reconstruction_and_greys_missing_rows():
    true = torch.zeros(3, 1, 8, 8)
    recon = torch.ones(3, 1, 8, 8)
    pixels = grid([true, recon])
    scale = MIN_DISPLAY_SIDE // 8
    assert pixels.dtype == np.uint8 and pixels.shape[2] == 3
    assert pixels.shape[1] == (3 * (8 + 2) + 2) * scale
    top, bottom = pixels[: pixels.shape[0] // 2], pixels[pixels.shape[0] // 2 :]
    assert top.min() == 0 and top.max() < 255 and bottom.max() == 255
    empty = grid([true, None])
    assert not (empty[empty.shape[0] // 2 :] == 255).any()  # nothing recovered: grey, no white pixels
    with pytest.raises(ValueError, match="B×C×H×W"):
        grid([torch.zeros(8, 8)])


def test_save_reconstruction_names_and_colour(tmp_path: Path):
    path = RunWriter(tmp_path).save_reconstruction(3, 2, "ig/cos", torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32))
    assert path.name == "r003_c2_ig-cos.png" and parse_image_name(path.name) == (3, 2, "ig-cos")
    assert Image.open(path).mode == "RGB"
    assert parse_image_name("notes.png") is None and image_name(1, 0, "dlg") == "r001_c0_dlg.png"


def test_summary_counts_failures_and_success_rate():
    rows = [record(1, 0, psnr=35.0).as_row(), record(2, 0, psnr=20.0).as_row(), record(3, 0, psnr=None).as_row()]
    (summary,) = summarize(rows)
    assert (summary.attempts, summary.ok, summary.failed) == (3, 2, 1)
    assert summary.median_psnr == 20.0  # 35, 20 and the failed attempt's image (not recovered): the middle one
    assert summary.success_rate == pytest.approx(1 / 3)  # the failed attempt counts as zero
    assert summary.failure_reasons == {"diverged: non-finite pixels": 1}


def test_median_is_over_every_true_image():
    # One exact image and two poor ones, then one image at 30 dB and two nobody reconstructed (−∞).
    exact_and_poor = record(1, 0, psnr=14.0, psnr_per_image="inf 12.0 14.0").as_row()
    unmatched = record(2, 0, psnr=-math.inf, psnr_per_image="- 30.0 -").as_row()
    (summary,) = summarize([exact_and_poor, unmatched])
    assert summary.median_psnr == 12.0  # −∞, −∞, 12, 14, 30, ∞: the worse middle image
    assert summarize([exact_and_poor])[0].median_psnr == 14.0


def _images_in(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_report_is_self_contained_and_complete(tmp_path: Path, scenario: Scenario):
    writer = RunWriter(tmp_path)
    writer.write_scenario(scenario)
    for r in (1, 2):
        writer.append_round({"round": r, "loss": 2.3 / r, "accuracy": 0.2 * r, "seconds": 1.0})
        for c in (0, 1):
            writer.append_leakage(record(r, c, psnr=40.0 - 10 * c + r))
            writer.save_reconstruction(r, c, "dlg", torch.rand(1 + 3 * c, 1, 28, 28), torch.rand(1 + 3 * c, 1, 28, 28))
    page = build_report(tmp_path).read_text()
    # Two clients that differ only in batch size: the batch-size figure compares them.
    assert {p.name for p in (tmp_path / "figures").iterdir()} == {
        "leakage_and_accuracy.png", "leakage_per_client.png", "leakage_vs_batch_size.png", "training.png"}
    images = _images_in(page)
    assert len(images) == 4 + 4 and all(img.startswith(b"\x89PNG") for img in images)
    assert not re.search(r'(src|href)="(?!data:)', page)  # no external assets
    for text in ("mnist", "lenet", "labels_known", "peak 1", "SSIM", "dlg", "iterations=5", "0.05"):
        assert text in page
    assert "42.00" in page  # client 0, round 2: 40 − 0 + 2 dB appears in the table or captions


def test_report_on_partial_run_with_only_failed_rows(tmp_path: Path):
    writer = RunWriter(tmp_path)
    writer.append_leakage(record(1, 0, psnr=None))
    writer.append_leakage(record(1, 1, psnr=None, reason="timeout"))
    with (tmp_path / "leakage.csv").open("a") as handle:
        handle.write("2,0,dlg,1,1")  # a row cut short by Ctrl-C
    page = build_report(tmp_path).read_text()
    assert "Every attack attempt failed" in page and "timeout" in page
    assert "1 damaged row" in page and "rounds.csv is missing" in page and "scenario.yaml is missing" in page
    assert "no successful reconstruction to plot" not in page  # said inside the figure image, not the page
    assert len(_images_in(page)) == 3


def test_report_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    RunWriter(tmp_path).append_round({"round": 1, "loss": 2.0, "accuracy": 0.1})
    assert cli_main(["report", str(tmp_path)]) == 0
    assert (tmp_path / "report.html").is_file() and "report.html" in capsys.readouterr().out
    assert cli_main(["report", str(tmp_path / "missing")]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli_main(["report", str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "not a run directory" in err


def test_threat_flags_of_the_record_match_the_threat_model():
    # The report reads these columns back; they must be the ThreatModel's field names.
    assert set(ThreatModel.model_fields) <= set(columns())


def test_defenses_and_dp_epsilon_round_trip_into_the_summary_and_the_page(tmp_path: Path):
    writer = RunWriter(tmp_path)
    writer.append_leakage(record(1, 0, defense="dp_sgd(noise_multiplier=1)", dp_epsilon=2.5))
    writer.append_leakage(record(2, 0, defense="dp_sgd(noise_multiplier=1)", dp_epsilon=3.25))
    writer.append_leakage(record(1, -1, defense="secure_aggregation"))
    rows = read_leakage(tmp_path / "leakage.csv").rows
    assert rows[1]["dp_epsilon"] == 3.25 and rows[2]["dp_epsilon"] is None
    by_client = {s.client: s for s in summarize(rows)}
    assert by_client[0].defenses == ["dp_sgd(noise_multiplier=1)"] and by_client[0].max_dp_epsilon == 3.25
    assert by_client[-1].defenses == ["secure_aggregation"] and by_client[-1].max_dp_epsilon is None
    page = build_report(tmp_path).read_text()
    assert "secure_aggregation" in page and ">aggregate<" in page and "3.25 (unit not recorded)" in page
