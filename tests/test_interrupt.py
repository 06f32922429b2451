"""Ctrl-C during `fedleak simulate` keeps a readable run directory that `fedleak report` can rebuild."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

SCENARIO = {
    "name": "interrupted",
    "data": {"dataset": "mnist", "eval_fraction": 0.05},
    "clients": {"count": 2, "overrides": [{"client": 0, "batch_size": 1}]},
    "training": {"rounds": 200, "batch_size": 2},
    "attacks": [{"name": "idlg", "params": {"iterations": 5}}],
    "executor": {"kind": "local"},
}


def fedleak(*args: str, **kwargs) -> subprocess.Popen:
    command = [sys.executable, "-c", "import sys; from fedleak.drivers.cli.main import main; sys.exit(main())", *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def data_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_ctrl_c_keeps_a_readable_run_directory(tmp_path: Path) -> None:
    scenario = tmp_path / "interrupted.yaml"
    scenario.write_text(yaml.safe_dump(SCENARIO))
    run_dir = tmp_path / "run"
    process = fedleak("simulate", str(scenario), "--out", str(run_dir))
    try:
        deadline = time.monotonic() + 240
        while not data_rows(run_dir / "rounds.csv") and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()[1][-2000:]
            time.sleep(0.5)
        assert data_rows(run_dir / "rounds.csv"), "no round finished in time"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode != 0, "an interrupted run must not report success"
    assert "Traceback" not in err, err[-2000:]
    assert (run_dir / "scenario.yaml").is_file()
    rounds = data_rows(run_dir / "rounds.csv")
    assert 1 <= len(rounds) < SCENARIO["training"]["rounds"]
    assert all(row["round"] for row in rounds)

    report = fedleak("report", str(run_dir))
    out, err = report.communicate(timeout=120)
    assert report.returncode == 0, err
    assert (run_dir / "report.html").is_file()
