"""report.html answers first: worst case per client (worst first), "no leakage" at or below the baseline, figures
that never pool unlike clients, leakage and accuracy on one time axis."""

from __future__ import annotations

import csv
import dataclasses
import re
from pathlib import Path

from fedleak.report import RunWriter, build_report
from fedleak.report.tables import read_leakage
from fedleak.report.timeline import client_rounds
from fedleak.report.worst import client_leakage, worst_images
from fedleak.types import LeakageRecord


def record(round: int, client: int, attack: str, psnrs: list[float], baselines: list[float],
           reidentified: list[int], **changes) -> LeakageRecord:
    fields = dict(
        round=round, client=client, attack=attack, batch_size=len(psnrs), local_steps=1, lr=0.1,
        update_kind="gradient", defense="none", status="ok", reason="", psnr=sum(psnrs) / len(psnrs), ssim=0.5,
        mse=0.01, label_accuracy=1.0, success=0.0, seconds=1.0, labels_known=False, local_hparams_known=True,
        batch_size_known=True, psnr_per_image=" ".join(f"{v:.3f}" for v in psnrs),
        baseline_psnr=sum(baselines) / len(baselines),
        baseline_psnr_per_image=" ".join(f"{v:.3f}" for v in baselines),
        reidentified=sum(reidentified) / len(reidentified),
        reidentified_per_image=" ".join(str(v) for v in reidentified),
    )
    fields.update(changes)
    return LeakageRecord(**fields)


def rows_of(tmp_path: Path, records: list[LeakageRecord]) -> list[dict]:
    writer = RunWriter(tmp_path)
    for r in records:
        writer.append_leakage(r)
    return read_leakage(tmp_path / "leakage.csv").rows


def test_worst_case_is_per_image_over_the_attacks_on_one_update(tmp_path):
    rows = rows_of(tmp_path, [
        record(1, 0, "idlg", [30.0, 8.0], [10.0, 11.0], [1, 0]),
        record(1, 0, "rconv", [12.0, 25.0], [10.0, 11.0], [0, 1]),
    ])
    facts = worst_images(rows)
    assert [(f.psnr, f.attack, f.reidentified, f.leaked) for f in facts] == [
        (30.0, "idlg", True, True), (25.0, "rconv", True, True)]
    (client,) = client_leakage(rows)
    assert client.worst_median_psnr == 25.0 and client.best_psnr == 30.0  # the worse of 25 and 30, never their mean
    assert client.reidentified == 1.0 and client.leaked == 1.0 and client.baseline == 10.0  # same rule


def test_clients_are_sorted_worst_first_and_at_baseline_is_no_leakage(tmp_path):
    rows = rows_of(tmp_path, [
        record(1, 0, "idlg", [10.0], [10.0], [0]),  # exactly the mean image's PSNR
        record(1, 1, "idlg", [35.0], [9.0], [1]),
        record(1, 2, "idlg", [20.0], [9.0], [0]),
    ])
    clients = client_leakage(rows)
    assert [c.client for c in clients] == [1, 2, 0]
    assert clients[2].no_leakage and not clients[0].no_leakage and clients[2].leaked == 0.0


def test_the_page_opens_with_the_client_summary_and_says_no_leakage(tmp_path):
    rows = [record(1, 0, "idlg", [10.0, 10.0], [10.0, 10.0], [0, 0]),
            record(1, 1, "idlg", [41.5], [9.0], [1], dp_epsilon=2.0, dp_delta=1e-5, dp_unit="record")]
    rows_of(tmp_path, rows)
    page = build_report(tmp_path).read_text()
    first_table = page.index("<table>")
    assert first_table < page.index("<h2>Figures</h2>") < page.index("<h2>Scenario</h2>")
    assert page.index("Worst case per client") < first_table
    summary = page[first_table:page.index("</table>", first_table)]
    body = summary.split("<tbody>")[1]
    assert body.index("<td class=\"num\">1</td>") < body.index("<td class=\"num\">0</td>")  # worst client first
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in body.split("<tr>")[1:]]
    worst_col = 6
    assert cells[0][0] == "1" and cells[0][worst_col] == "41.50"
    # The PSNR at the baseline is never shown as a number of dB: "no leakage", the numbers only in the tooltip.
    assert cells[1][0] == "0" and re.fullmatch(r'<span class="none" title="[^"]+">no leakage</span>',
                                               cells[1][worst_col])
    assert "2.00 per record, δ 1e-05" in body
    assert "any one training example can change what the client sends" in page


def test_many_clients_are_cut_into_a_csv(tmp_path):
    rows_of(tmp_path, [record(1, c, "idlg", [10.0 + c], [9.0], [int(c > 20)]) for c in range(25)])
    page = build_report(tmp_path).read_text()
    summary = page[page.index("<table>"):page.index("</table>")]
    assert summary.count("<tr>") == 1 + 20
    assert "5 more clients are only in" in page and 'download="clients.csv"' in page
    with (tmp_path / "clients.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 25 and [r["client"] for r in table[:5]] == ["24", "23", "22", "21", "20"]


def test_no_batch_size_figure_pools_clients_that_defended_differently(tmp_path):
    rows_of(tmp_path, [record(1, 0, "idlg", [30.0], [9.0], [1]),
                       record(1, 1, "idlg", [20.0, 18.0], [9.0, 9.0], [0, 0], defense="prune(ratio=0.5)")])
    page = build_report(tmp_path).read_text()
    assert not (tmp_path / "figures" / "leakage_vs_batch_size.png").exists()
    assert (tmp_path / "figures" / "leakage_per_client.png").is_file() and "Leakage per client" in page


def test_leakage_and_accuracy_share_one_round_axis(tmp_path):
    rows = rows_of(tmp_path, [
        record(1, 0, "idlg", [30.0], [9.0], [1]), record(3, 0, "idlg", [8.0], [9.0], [0]),
        record(1, 1, "idlg", [15.0], [9.0], [0]), record(3, 1, "rconv", [50.0], [9.0], [1]),
    ])
    assert client_rounds(rows) == {0: [(1, 30.0, True), (3, 8.0, False)], 1: [(1, 15.0, True), (3, 50.0, True)]}
    writer = RunWriter(tmp_path)
    for r in (1, 2, 3):
        writer.append_round({"round": r, "loss": 1.0 / r, "accuracy": 0.3 * r})
    page = build_report(tmp_path).read_text()
    assert (tmp_path / "figures" / "leakage_and_accuracy.png").is_file()
    assert re.search(r"Leakage and accuracy on one time axis", page)


def test_skipped_attacks_are_not_counted_as_attacked_images(tmp_path):
    skipped = dataclasses.replace(
        record(1, 1, "idlg", [0.0], [9.0], [0]), status="skipped", reason="over the image cap", psnr=None,
        psnr_per_image="", baseline_psnr=None, baseline_psnr_per_image="", reidentified=None,
        reidentified_per_image="", batch_size=600)
    rows = rows_of(tmp_path, [record(1, 0, "idlg", [30.0], [9.0], [1]), skipped])
    clients = {c.client: c for c in client_leakage(rows)}
    assert clients[1].images == 0 and clients[0].images == 1
    page = build_report(tmp_path).read_text()
    assert "not attacked (every attack skipped)" in page and "1 of 1 attacked clients leak" in page


def test_below_baseline_but_reidentified_is_never_called_no_leakage(tmp_path):
    # Salt-noise reconstructions score under the mean image's PSNR yet name the digit: PSNR alone would flatter.
    rows_of(tmp_path, [record(1, 0, "idlg", [8.0, 9.0], [11.0, 11.0], [1, 0])])
    page = build_report(tmp_path).read_text()
    summary = page[page.index("<table>"):page.index("</table>")]
    assert "no leakage" not in summary and "≤ baseline, yet 50 % re-identified" in summary
    assert "1 of 1 attacked clients leak" in page
