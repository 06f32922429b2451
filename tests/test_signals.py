"""Signals end a run cleanly: SIGINT and SIGTERM both keep what was written, rebuild the report, stop every process
the run started (Ray's included) within seconds, and exit non-zero with one line; a client that dies ends the run
with one line naming it. Slow: each case starts a real simulation on Ray."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_interrupt import data_rows
from test_loopback import _family

SCENARIO = {
    "name": "signalled",
    "data": {"dataset": "mnist", "eval_fraction": 0.05},
    "clients": {"count": 2, "overrides": [{"client": 0, "batch_size": 1}]},
    "training": {"rounds": 200, "batch_size": 2},
    "attacks": [{"name": "idlg", "params": {"iterations": 5}}],
    "executor": {"kind": "ray", "workers": 1},
}
#: Seconds from the signal until the command has exited and every process it started is gone.
STOP_WITHIN_S = 30


def _start(tmp_path: Path, scenario: dict) -> tuple[subprocess.Popen, Path]:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(scenario))
    run_dir = tmp_path / "run"
    command = [sys.executable, "-c", "import sys; from fedleak.drivers.cli.main import main; sys.exit(main())",
               "simulate", str(path), "--out", str(run_dir)]
    # A session of its own, as a terminal gives: Ctrl-C reaches every process of the foreground group.
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True), run_dir


def _alive(pids: set[int]) -> list[str]:
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z":
                alive.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:100])
        except OSError:
            continue
    return alive


#: Known defect (docs/reliability.md): Ctrl-C to the whole group stops Ray's processes at once, and a thread still
#: calling Ray can make Ray's core worker end the command before the report is rebuilt. Not strict: it also passes.
CTRL_C_RACE = pytest.mark.xfail(strict=False, reason="Ray's core worker can end the process after Ctrl-C to the group "
                                "before the report is rebuilt (known defect, docs/reliability.md)")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [pytest.param(signal.SIGINT, marks=CTRL_C_RACE), signal.SIGTERM],
                         ids=["SIGINT", "SIGTERM"])
def test_a_signal_keeps_the_rows_rebuilds_the_report_and_stops_every_process(tmp_path, signum) -> None:
    process, run_dir = _start(tmp_path, SCENARIO)
    try:
        deadline = time.monotonic() + 300
        while not data_rows(run_dir / "leakage.csv") and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()[1][-2000:]
            time.sleep(0.5)
        assert data_rows(run_dir / "leakage.csv"), "no attack finished in time"
        family = _family(process.pid) - {process.pid}
        assert family, "the run started no process: the test would prove nothing"
        sent = time.monotonic()
        if signum == signal.SIGINT:
            os.killpg(process.pid, signum)  # Ctrl-C in a terminal: the whole foreground process group
        else:
            process.send_signal(signum)  # `kill PID`: the command only
        _, err = process.communicate(timeout=120)
        while _alive(family) and time.monotonic() - sent < STOP_WITHIN_S:
            time.sleep(0.2)
        stopped_after = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode != 0, "an interrupted run must not report success"
    assert "Traceback" not in err, err[-3000:]
    assert not _alive(family), f"still running {stopped_after:.0f} s after the signal: {_alive(family)}"
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines[-1].startswith("fedleak simulate: interrupted"), err[-2000:]
    assert (run_dir / "report.html").is_file() and (run_dir / "scenario.yaml").is_file()
    assert data_rows(run_dir / "leakage.csv") and data_rows(run_dir / "rounds.csv")
