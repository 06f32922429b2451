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
    assert len(rows) == 12  # 2 metrics × 2 attacks × 3 datasets
    assert all(row["fedleak"].endswith("/2)") and "2 bundled test images" in row["setting"] for row in rows)
    label_rows = {row["figure"]: row for row in rows if row["figure"].startswith("label accuracy")}
    assert label_rows["label accuracy iDLG MNIST"]["paper"].startswith("100 %")
    assert label_rows["label accuracy DLG LFW"]["paper"].startswith("79.1 %")
    text = (tmp_path / "table.md").read_text()
    assert "took " in text and text.count("\n| ") == 13  # header + 12 rows
    assert "took " in capsys.readouterr().out
