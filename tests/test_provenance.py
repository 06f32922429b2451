"""Provenance: ``fedleak --version`` and the run.json every run directory carries (fedleak.provenance)."""

from __future__ import annotations

import hashlib
import json
from contextlib import nullcontext
from importlib import metadata
from pathlib import Path

import pytest

import fedleak
from fedleak import provenance
from fedleak.drivers.cli.main import main
from fedleak.report import RunWriter

ROOT = Path(__file__).resolve().parents[1]


def test_version_flag_prints_the_version_and_exits_0(capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"fedleak {fedleak.__version__}")
    commit, _ = provenance.git_commit()
    if commit is not None:  # a git checkout (editable install): the commit is named
        assert f"commit {commit[:12]}" in out


def test_a_record_names_versions_lock_device_and_seed(monkeypatch) -> None:
    monkeypatch.setattr(provenance, "_COMMAND", None)
    record = provenance.collect("simulate", seed=7, device="cpu", scenario="demo")
    data = json.loads(record.to_json())
    assert data["kind"] == "simulate" and data["seed"] == 7 and data["extra"] == {"scenario": "demo"}
    assert data["fedleak_version"] == fedleak.__version__
    for name in ("torch", "flwr", "ray", "opacus"):
        assert data["versions"][name] == metadata.version(name)
    assert data["versions"]["python"].count(".") == 2
    lock = ROOT / "requirements.lock"
    if lock.is_file():
        assert data["lock_sha256"] == hashlib.sha256(lock.read_bytes()).hexdigest()
        assert data["environment_matches_lock"] == (data["lock_differences"] == [])
    assert data["device"] == {"requested": "cpu", "resolved": "cpu", "gpu": None}
    assert data["started_at"].endswith("+00:00") and data["finished_at"] is None and data["status"] == "running"
    assert data["command"] is None  # called from Python, not from the fedleak command


def test_a_lock_that_differs_from_the_environment_is_named(tmp_path: Path) -> None:
    (tmp_path / "requirements.lock").write_text("# header\ntorch==0.0.1\nnot-a-real-package==1.0\n")
    facts = provenance.lock_facts(tmp_path)
    assert facts["environment_matches_lock"] is False
    assert f"torch: lock 0.0.1, installed {metadata.version('torch')}" in facts["lock_differences"]
    assert "not-a-real-package: lock 1.0, installed -" in facts["lock_differences"]
    assert provenance.lock_facts(tmp_path / "nowhere")["lock_sha256"] is None


@pytest.mark.parametrize(("raised", "status"), [(None, "complete"), (KeyboardInterrupt, "interrupted"),
                                                 (RuntimeError, "failed")])
def test_run_json_is_rewritten_with_the_end_and_how_it_ended(tmp_path: Path, raised, status) -> None:
    writer = RunWriter(tmp_path)
    record = provenance.collect("attack", seed=0, device="cpu")
    seen_while_running = []
    with pytest.raises(raised) if raised else nullcontext():
        with provenance.recorded(writer.write_run_record, record):
            seen_while_running.append(provenance.read(tmp_path))
            if raised:
                raise raised()
    assert seen_while_running[0]["status"] == "running" and seen_while_running[0]["finished_at"] is None
    after = provenance.read(tmp_path)
    assert after["status"] == status and after["finished_at"] >= after["started_at"]


def test_the_command_line_is_recorded_and_added_to_a_record_written_elsewhere(tmp_path: Path, monkeypatch) -> None:
    # The deployment's ServerApp writes run.json in its own process (no command line); the launcher adds its own.
    monkeypatch.setattr(provenance, "_COMMAND", None)
    RunWriter(tmp_path).write_run_record(provenance.collect("deploy", seed=1, device="cpu"))
    assert provenance.with_command(tmp_path) is None
    provenance.set_command(["deploy", "scenarios/smoke.yaml"])
    updated = provenance.with_command(tmp_path)
    assert updated is not None and updated.command == ["fedleak", "deploy", "scenarios/smoke.yaml"]
    assert provenance.collect("simulate", seed=1, device="cpu").command == updated.command
