"""Read a run's CSVs back (tolerating a run cut short) and summarise leakage per attack × client.

Partial files are normal: a run stopped after round 1, or killed in the middle of writing a row. Rows
with the wrong number of cells are skipped and counted, never guessed at.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedleak.metrics.headline import median_psnr, median_ssim
from fedleak.types import LeakageRecord

Row = dict[str, Any]


@dataclass
class Table:
    """Rows of one CSV file, typed, plus how many damaged rows were skipped."""

    rows: list[Row] = field(default_factory=list)
    skipped: int = 0
    header: list[str] = field(default_factory=list)


def read_table(path: Path, types: dict[str, Callable[[str], Any]] | None = None) -> Table:
    """Read a CSV; empty cells become None; ``types`` converts named columns, others are guessed."""
    if not path.is_file():
        return Table()
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header:
            return Table()
        table = Table(header=header)
        types = types or {}
        for cells in reader:
            if len(cells) != len(header):
                table.skipped += 1
                continue
            try:
                table.rows.append({k: _convert(v, types.get(k)) for k, v in zip(header, cells, strict=True)})
            except ValueError:
                table.skipped += 1
    return table


def read_leakage(path: Path) -> Table:
    """leakage.csv with each column converted to its :class:`LeakageRecord` field type."""
    return read_table(path, _leakage_types())


def read_rounds(path: Path) -> Table:
    """rounds.csv; numbers are guessed per cell (its columns vary with the run)."""
    return read_table(path)


def _leakage_types() -> dict[str, Callable[[str], Any]]:
    converters: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "bool": _parse_bool, "str": str}
    types = {}
    for name, spec in LeakageRecord.__dataclass_fields__.items():
        annotation = str(spec.type).replace(" | None", "")
        types[name] = converters.get(annotation, str)
    return types


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _convert(text: str, kind: Callable[[str], Any] | None) -> Any:
    if text == "":
        return None
    if kind is not None:
        return kind(text)
    for guess in (int, float):
        try:
            return guess(text)
        except ValueError:
            pass
    return text


def is_number(value: Any) -> bool:
    """A real number, infinity included (an exact reconstruction has infinite PSNR), NaN excluded."""
    return isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)


def median(values: Iterable[Any]) -> float | None:
    numbers = [float(v) for v in values if is_number(v)]
    return statistics.median(numbers) if numbers else None


def mean(values: Iterable[Any]) -> float | None:
    numbers = [float(v) for v in values if is_number(v)]
    return statistics.fmean(numbers) if numbers else None


def baseline_psnrs(row: Row) -> list[float]:
    """Per-image mean-image baselines of one row; the row's mean where it has no per-image values."""
    values = [float(t) for t in str(row.get("baseline_psnr_per_image") or "").split() if t not in ("-", "nan")]
    if not values and is_number(row.get("baseline_psnr")):
        values.append(float(row["baseline_psnr"]))
    return values


def _skipped(row: Row) -> bool:
    return row.get("status") == "skipped"


def _reidentified(rows: list[Row]) -> float | None:
    """Mean re-identified share over the attempts (a failed one counts as zero, a skipped one not at all); None when
    no ok row has it."""
    ok = [r for r in rows if r.get("status") == "ok"]
    if not ok or any(not is_number(r.get("reidentified")) for r in ok):
        return None
    return mean(r["reidentified"] if r.get("status") == "ok" else 0.0 for r in rows if not _skipped(r))


def image_psnrs(row: Row) -> list[float | None]:
    """Per true image PSNR of one row, in the batch's order; ``None`` for an image not recovered.

    An ok row's '-' cells are images nobody reconstructed; a failed row recovered none of its ``batch_size`` images;
    an ok row without per-image values (an older file) gives its batch headline once. Skipped rows attacked nothing
    and give nothing.
    """
    if _skipped(row):
        return []
    if row.get("status") != "ok":
        return [None] * int(row["batch_size"]) if is_number(row.get("batch_size")) else []
    values: list[float | None] = []
    for token in str(row.get("psnr_per_image") or "").split():
        try:
            value = float(token)
        except ValueError:
            value = None
        values.append(None if value is None or math.isnan(value) else value)
    if not values and is_number(row.get("psnr")):
        values.append(float(row["psnr"]))
    return values


@dataclass
class AttackClientSummary:
    """Leakage of one attack against one client, over every round it was attacked."""

    attack: str
    client: int
    batch_sizes: list[int]
    local_steps: list[int]
    lrs: list[float]
    defenses: list[str]
    #: The largest ε the client's DP-SGD had spent when attacked (None without DP-SGD).
    max_dp_epsilon: float | None
    attempts: int
    ok: int
    failed: int
    #: Median over every attacked true image (fedleak.metrics.headline): images not recovered, failed attempts'
    #: included, count as −∞; ∞ only when every image is exact.
    median_psnr: float | None
    #: Median over the successful attempts of their batch SSIM (a batch's SSIM is already its median image's).
    median_ssim: float | None
    mean_label_accuracy: float | None
    #: Share of attacked images at or above the success PSNR, failed attempts counting as zero.
    success_rate: float | None
    mean_seconds: float | None
    failure_reasons: Counter[str]
    #: Median over the attacked images of the mean-image baseline (None where the rows carry none), same rule as PSNR.
    baseline: float | None = None
    #: Share of attacked images re-identified, failed attempts counting as zero (None where not computed).
    reidentified: float | None = None


def summarize(rows: list[Row]) -> list[AttackClientSummary]:
    """One summary per (attack, client), sorted by attack then client."""
    groups: dict[tuple[str, int], list[Row]] = defaultdict(list)
    for row in rows:
        groups[(str(row.get("attack")), int(row.get("client") or 0))].append(row)
    summaries = []
    for (attack, client), group in sorted(groups.items()):
        ok = [r for r in group if r.get("status") == "ok"]
        failed = [r for r in group if r.get("status") != "ok"]
        # A skipped attempt (the attack declined, e.g. over its image cap) tried nothing: it is no zero.
        success = [r.get("success") if r.get("status") == "ok" else 0.0 for r in group if not _skipped(r)]
        summaries.append(
            AttackClientSummary(
                attack=attack,
                client=client,
                batch_sizes=sorted({r["batch_size"] for r in group if r.get("batch_size") is not None}),
                local_steps=sorted({r["local_steps"] for r in group if r.get("local_steps") is not None}),
                lrs=sorted({r["lr"] for r in group if r.get("lr") is not None}),
                defenses=sorted({str(r.get("defense") or "none") for r in group}),
                max_dp_epsilon=max((float(r["dp_epsilon"]) for r in group if is_number(r.get("dp_epsilon"))),
                                   default=None),
                attempts=len(group),
                ok=len(ok),
                failed=len(failed),
                median_psnr=median_psnr(v for r in group for v in image_psnrs(r)),
                median_ssim=median_ssim(r.get("ssim") for r in ok if is_number(r.get("ssim"))),
                mean_label_accuracy=mean(r.get("label_accuracy") for r in group),
                success_rate=mean(success),
                mean_seconds=mean(r.get("seconds") for r in group),
                failure_reasons=Counter(str(r.get("reason") or "no reason given") for r in failed),
                baseline=median_psnr(v for r in group for v in baseline_psnrs(r)),
                reidentified=_reidentified(group),
            )
        )
    return summaries
