"""The run directory: append-only result tables, the resolved scenario and reconstruction grids.

Layout written here::

    run_dir/
      run.json         where the run came from: versions, commit, lock, device, command, seed, times
      scenario.yaml    the resolved scenario (every default filled in)
      leakage.csv      one row per attack × client × round (fedleak.types.LeakageRecord)
      diagnostics.jsonl  one JSON line per leakage.csv row: every diagnostic the attack returned (mixture flag,
                       per-layer rank and method, label rule, …), keyed by round, client, attack and timestamp
      rounds.csv       one row per round of training (round, loss, accuracy, seconds, …)
      membership.csv   one row per membership attack × client × round (fedleak.types.MembershipRecord)
      audit.csv        one row per audited client: the one-run DP audit's lower bound on ε (fedleak.report.audit)
      images/          r001_c0_dlg.png: true images (top row) and the reconstruction (bottom row)

Every row is flushed as soon as it is written, so a run stopped with Ctrl-C keeps everything it produced.
Writes are serialised by a lock, so a writer shared between threads keeps every row whole.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from fedleak.config.schema import Scenario
from fedleak.fence import inside
from fedleak.provenance import RUN_FILE, RunRecord
from fedleak.report.audit import AUDIT_COLUMNS, AUDIT_FILE
from fedleak.report.images import save_grid
from fedleak.types import LeakageRecord, MembershipRecord, columns, membership_columns

SCENARIO_FILE = "scenario.yaml"
LEAKAGE_FILE = "leakage.csv"
DIAGNOSTICS_FILE = "diagnostics.jsonl"
#: Diagnostic tensors larger than this are written as their shape, so one line stays readable.
MAX_LISTED = 256
ROUNDS_FILE = "rounds.csv"
MEMBERSHIP_FILE = "membership.csv"
IMAGES_DIR = "images"


class RunWriter:
    """Writes one run's outputs under ``run_dir`` (created on first use)."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self._lock = threading.Lock()

    def write_scenario(self, scenario: Scenario) -> Path:
        """Write the resolved scenario (``model_dump``) as YAML and return its path."""
        path = self._path(SCENARIO_FILE)
        text = yaml.safe_dump(scenario.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
        with self._lock:
            path.write_text(text)
        return path

    def write_run_record(self, record: RunRecord) -> Path:
        """Write ``run.json`` (fedleak.provenance): where the run came from, when it started and ended."""
        path = self._path(RUN_FILE)
        with self._lock:
            path.write_text(record.to_json(), encoding="utf-8")
        return path

    def append_leakage(self, record: LeakageRecord) -> None:
        """Append one result row to leakage.csv (header written once, row flushed)."""
        row = {key: _cell(value) for key, value in record.as_row().items()}
        with self._lock:
            _append_row(self._path(LEAKAGE_FILE), columns(), row)

    def append_membership(self, record: MembershipRecord) -> None:
        """Append one membership row to membership.csv (header written once, row flushed)."""
        row = {key: _cell(value) for key, value in record.as_row().items()}
        with self._lock:
            _append_row(self._path(MEMBERSHIP_FILE), membership_columns(), row)

    def append_audit(self, row: dict[str, Any]) -> None:
        """Append one audited client's row to audit.csv (fedleak.report.audit; header written once, row flushed)."""
        with self._lock:
            _append_row(self._path(AUDIT_FILE), AUDIT_COLUMNS, {key: _cell(value) for key, value in row.items()})

    def append_diagnostics(self, record: LeakageRecord, diagnostics: dict[str, Any]) -> None:
        """Append the attack's diagnostics for ``record`` as one JSON line of diagnostics.jsonl (flushed).

        The key (round, client, attack, timestamp) is the row's own, so the two files join one-to-one.
        """
        line = {"round": record.round, "client": record.client, "attack": record.attack,
                "timestamp": record.timestamp, "status": record.status, "diagnostics": json_safe(diagnostics)}
        text = json.dumps(line, allow_nan=False, ensure_ascii=False)
        with self._lock:
            with self._path(DIAGNOSTICS_FILE).open("a", encoding="utf-8") as handle:
                handle.write(text + "\n")
                handle.flush()

    def append_round(self, row: dict[str, Any]) -> None:
        """Append one training-round row to rounds.csv.

        The header is the first row's keys. A later row with new keys (e.g. an evaluation metric that
        starts in round 2) rewrites the file once with the wider header, atomically, so nothing is lost.
        """
        if "round" not in row:
            raise ValueError("a rounds.csv row needs a 'round' key")
        cells = {str(key): _cell(value) for key, value in row.items()}
        with self._lock:
            path = self._path(ROUNDS_FILE)
            header = _read_header(path)
            if header is None:
                header = list(cells)
            elif set(cells) - set(header):
                header = header + [key for key in cells if key not in header]
                _rewrite_with_header(path, header)
            _append_row(path, header, cells)

    def save_reconstruction(
        self,
        round: int,
        client: int,
        attack: str,
        true_images: torch.Tensor | np.ndarray,
        lined_up: torch.Tensor | None,
    ) -> Path:
        """Save true images (top row) above the reconstruction (bottom row; grey when nothing was recovered).

        ``lined_up`` is the reconstruction in the scorer's matching order (``fedleak.scoring.Scored.lined_up``), so
        each column pairs a true image with the reconstruction scored against it.
        Returns ``images/r{round:03d}_c{client}_{attack}.png``.
        """
        self._path(IMAGES_DIR)
        path = self._path(f"{IMAGES_DIR}/{image_name(round, client, attack)}")
        return save_grid(path, torch.as_tensor(true_images), lined_up)

    def _path(self, name: str) -> Path:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # Checked on every write: a link planted in the run folder never redirects a write (fedleak.fence).
        return inside(self.run_dir, name)


def image_name(round: int, client: int, attack: str) -> str:
    """File name of one reconstruction grid; the attack name is made file-system safe."""
    return f"r{int(round):03d}_c{int(client)}_{safe_name(attack)}.png"


def safe_name(attack: str) -> str:
    """The attack name as it appears in file names (anything outside [A-Za-z0-9_.-] becomes '-')."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", attack)


def parse_image_name(name: str) -> tuple[int, int, str] | None:
    """(round, client, attack) from a grid's file name, or None for other files."""
    match = re.fullmatch(r"r(\d+)_c(\d+)_(.+)\.png", name)
    return (int(match[1]), int(match[2]), match[3]) if match else None


def json_safe(value: Any) -> Any:
    """A JSON-ready copy: tensors and numpy values → numbers or lists (large ones → their shape), non-finite floats →
    strings ("inf", "nan"), dataclasses → dicts, anything else unknown → its repr."""
    if isinstance(value, torch.Tensor | np.ndarray):
        count = value.size if isinstance(value, np.ndarray) else value.numel()
        if count > MAX_LISTED:
            return f"array of shape {tuple(value.shape)}"
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if hasattr(value, "__dataclass_fields__"):
        return json_safe({k: getattr(value, k) for k in value.__dataclass_fields__})
    return repr(value)


def _cell(value: Any) -> Any:
    """CSV cell: None → empty, tensors/numpy scalars → Python numbers."""
    if value is None:
        return ""
    if isinstance(value, torch.Tensor | np.generic):
        return value.item()
    return value


def _read_header(path: Path) -> list[str] | None:
    if not path.is_file() or path.stat().st_size == 0:
        return None
    with path.open(newline="") as handle:
        return next(csv.reader(handle), None)


def _append_row(path: Path, header: list[str], row: dict[str, Any]) -> None:
    write_header = not path.is_file() or path.stat().st_size == 0
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, restval="", extrasaction="raise")
        if write_header:
            writer.writeheader()
        writer.writerow(row)
        handle.flush()


def _rewrite_with_header(path: Path, header: list[str]) -> None:
    with path.open(newline="") as handle:
        # A row cut short by an interrupted write has missing cells (None values) or spill-over (None key).
        rows = [{k: v for k, v in r.items() if k is not None} for r in csv.DictReader(handle)]
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, restval="")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
