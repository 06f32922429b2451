"""``fedleak reproduce``: the entry list, the table writer, the ``idlg-table`` entry end to end, bad names."""

from __future__ import annotations

import csv

import pytest

from fedleak.drivers.cli.main import main
from fedleak.drivers.reproduce import Entry, Measured, PaperFigure, write_table


def test_list_names_the_idlg_table(capsys):
    assert main(["reproduce", "--list"]) == 0
    assert "idlg-table" in capsys.readouterr().out


def test_table_writer_puts_the_paper_beside_fedleak(tmp_path):
    entry = Entry(
        name="fake", title="A fake paper", paper="Someone 2020",
        figures=(PaperFigure("accuracy", "90 %", "Table 1", "B = 1"), PaperFigure("loss", "0.1", "Fig. 2", "B = 4")),
        measure=lambda quick, out: {},
    )
    text = write_table(entry, {"accuracy": Measured("85 % (17/20)", "20 images")}, tmp_path, seconds=3.2)
    with open(tmp_path / "table.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [list(row) for row in rows] == [["figure", "paper", "fedleak", "setting"]] * 2
    assert rows[0] == {"figure": "accuracy", "paper": "90 % (Table 1; B = 1)", "fedleak": "85 % (17/20)",
                       "setting": "20 images"}
    assert rows[1]["fedleak"] == "not measured"
    assert (tmp_path / "table.md").read_text() == text
    assert "| accuracy | 90 % (Table 1; B = 1) | 85 % (17/20) | 20 images |" in text
    assert "took 3 s" in text


def test_unknown_name_is_one_line_and_exit_2(capsys):
    assert main(["reproduce", "no-such-entry"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "idlg-table" in err


@pytest.mark.slow
def test_idlg_table_quick_end_to_end(tmp_path, capsys):
    assert main(["reproduce", "idlg-table", "--quick", "--out", str(tmp_path)]) == 0
    with open(tmp_path / "table.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 18  # 2 metrics × 3 runs (DLG, iDLG as published; fedleak's dlg) × 3 datasets
    assert all(row["fedleak"].split(")")[0].endswith("/2") and "departures:" in row["setting"] for row in rows)
    by_name = {row["figure"]: row for row in rows}
    assert by_name["label accuracy iDLG MNIST"]["paper"].startswith("100 %")
    assert by_name["label accuracy DLG LFW"]["paper"].startswith("79.1 %")
    reading = by_name["MSE ≤ 1e-3 DLG LFW"]["paper"]
    assert "Fig. 1" in reading and "approximate" in reading and "Table 2" not in reading
    assert by_name["MSE ≤ 1e-3 fedleak dlg MNIST"]["paper"].startswith("– (not in the paper")
    assert "as published" in by_name["MSE ≤ 1e-3 DLG MNIST"]["setting"]
    assert "not the paper's method" in by_name["MSE ≤ 1e-3 fedleak dlg MNIST"]["setting"]
    with open(tmp_path / "runs.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 18  # 2 images × 3 runs × 3 datasets
    text = (tmp_path / "table.md").read_text()
    assert "took " in text and text.count("\n| ") == 19  # header + 18 rows
    assert "took " in capsys.readouterr().out


def test_idlg_table_runs_dlg_as_published():
    from fedleak.attacks import get_attack
    from fedleak.drivers.reproduce.idlg_table import settings_of

    plain = get_attack("dlg", **settings_of("DLG", 300)).config
    assert (plain.init, plain.restarts, plain.max_redraws, plain.tolerance, plain.stall_check) == ("normal", 1, 0, 0, 0)
    loop = plain.match_config()
    assert (loop.optimizer, loop.lr, loop.iterations, loop.lbfgs_inner, loop.lbfgs_history) == ("lbfgs", 1.0, 300, 20,
                                                                                                 100)
    assert loop.line_search == "none" and loop.max_step is None and loop.tv_weight == 0 and loop.patience == 0
    assert get_attack("idlg", **settings_of("iDLG", 300)).config.label_method == "idlg"
    assert settings_of("fedleak dlg", 300) == {"iterations": 300}  # fedleak's defaults, in a row of their own
