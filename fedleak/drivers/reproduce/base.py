"""Reproductions as data + one function each: the paper's figures, and a ``measure`` that returns fedleak's."""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fedleak.registry import Registry

COLUMNS = ("figure", "paper", "fedleak", "setting")


@dataclass(frozen=True)
class PaperFigure:
    """One figure a paper reports: its name in the table, its value, where in the paper, and the paper's setting."""

    name: str
    value: str
    where_in_paper: str
    setting: str


@dataclass(frozen=True)
class Measured:
    """fedleak's figure for one :class:`PaperFigure` and the setting it was measured in (images, runs, iterations)."""

    value: str
    setting: str


#: ``measure(quick, out_dir)`` → fedleak's figure per :attr:`PaperFigure.name`.
Measure = Callable[[bool, Path], dict[str, Measured]]


@dataclass(frozen=True)
class Entry:
    """One reproduction: the paper, the figures it reports, and the function that measures ours."""

    name: str
    title: str
    paper: str
    figures: tuple[PaperFigure, ...]
    measure: Measure


ENTRIES: Registry[Entry] = Registry("reproduction")


def register_entry(entry: Entry) -> Entry:
    ENTRIES.add(entry.name, entry)
    return entry


def table_rows(entry: Entry, measured: dict[str, Measured]) -> list[dict[str, str]]:
    """One row per paper figure; a figure fedleak did not measure reads "not measured"."""
    rows = []
    for figure in entry.figures:
        ours = measured.get(figure.name, Measured("not measured", ""))
        rows.append({
            "figure": figure.name,
            "paper": f"{figure.value} ({figure.where_in_paper}; {figure.setting})",
            "fedleak": ours.value,
            "setting": ours.setting,
        })
    return rows


def render_markdown(entry: Entry, rows: list[dict[str, str]], seconds: float) -> str:
    lines = [f"# {entry.title}", "", f"Paper: {entry.paper}", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row[c].replace("|", "\\|") for c in COLUMNS) + " |" for row in rows]
    lines += ["", f"took {seconds:.0f} s", ""]
    return "\n".join(lines)


def write_table(entry: Entry, measured: dict[str, Measured], out_dir: Path, seconds: float) -> str:
    """Write ``table.md`` and ``table.csv`` (columns figure, paper, fedleak, setting) into ``out_dir``; return the
    Markdown table, which ends with the time the measurement took."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = table_rows(entry, measured)
    text = render_markdown(entry, rows, seconds)
    (out_dir / "table.md").write_text(text)
    with open(out_dir / "table.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return text


def write_rows(rows: list[dict], path: Path) -> None:
    """An entry's own per-image results as CSV (columns from the first row), beside its table."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def reproduce(name: str, out_dir: Path, quick: bool = False) -> str:
    """Run one entry, write its table into ``out_dir`` and return the table as Markdown."""
    entry = ENTRIES.get(name)
    start = time.perf_counter()
    measured = entry.measure(quick, out_dir)
    return write_table(entry, measured, out_dir, time.perf_counter() - start)
