"""Attackers on an existing Ray cluster: a loopback head this test starts itself, scenarios/smoke.yaml run against
it as a user would (``RAY_ADDRESS``), the attacks seen on that cluster, the cluster left running with no fedleak
actor on it, and only the processes this test started stopped.

Ray's state API (``ray.util.state``) needs the dashboard, which the ``ray`` Flower pins ships without; the checks
use what every Ray install has: each attack row's diagnostics name the cluster and node it ran on (from Ray's
runtime context), and ``ray.util.list_named_actors`` lists live attacker actors.
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` makes Ray keep its node address on 127.0.0.1, so every byte stays on
loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from fedleak.drivers.cli.main import main
from fedleak.runtime.cluster import cluster_address

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_cluster_is_one_line_naming_it(tmp_path: Path, capsys) -> None:
    raw = yaml.safe_load((ROOT / "scenarios" / "smoke.yaml").read_text())
    port = _free_port()  # nothing listens there
    raw["executor"]["address"] = f"127.0.0.1:{port}"
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(raw))
    start = time.monotonic()
    assert main(["simulate", str(path), "--out", str(tmp_path / "run")]) == 2
    assert time.monotonic() - start < 30
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert f"executor.address 127.0.0.1:{port}" in last and "no Ray cluster" in last
    assert not (tmp_path / "run").exists()  # nothing written


def test_the_address_comes_from_the_scenario_else_ray_address(monkeypatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert cluster_address(None) is None
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1234")
    assert cluster_address(None) == "127.0.0.1:1234"
    assert cluster_address("127.0.0.1:9") == "127.0.0.1:9"


def _python(code: str, address: str) -> dict:
    """Ask the cluster something from a fresh driver (the test process must not join it itself)."""
    out = subprocess.run([sys.executable, "-c", code, address], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **LOOPBACK_ENV})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


CLUSTER_STATE = """
import json, sys, ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
actors = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)]
nodes = [{"id": n["NodeID"], "ip": n["NodeManagerAddress"]} for n in ray.nodes() if n["Alive"]]
print(json.dumps({"actors": actors, "nodes": nodes, "attackers": ray.cluster_resources().get("fedleak_attacker", 0)}))
"""


class LoopbackHead:
    """``ray start --head --block`` on a free loopback port in its own temp folder; stopped by its own pid."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        # Ray puts unix sockets under the temp dir: keep its path short.
        self.temp = Path(tempfile.mkdtemp(prefix="flk-ray-", dir="/tmp"))
        command = [str(BIN / "ray"), "start", "--head", "--block", "--port", str(self.port),
                   "--node-ip-address=127.0.0.1", "--num-cpus", "2", "--resources", '{"fedleak_attacker": 2}',
                   "--temp-dir", str(self.temp), "--include-dashboard", "false", "--disable-usage-stats"]
        self.process = subprocess.Popen(command, env={**os.environ, **LOOPBACK_ENV}, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)

    def wait_ready(self, timeout: float = 120) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            assert self.process.poll() is None, "ray start exited early"
            try:
                _python(CLUSTER_STATE, self.address)
                return
            except AssertionError:
                time.sleep(2)
        raise AssertionError(f"no Ray head at {self.address} after {timeout} s")

    def pids(self) -> list[int]:
        """Every process whose command line names this head's temp folder (its GCS, raylet, workers …)."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if str(self.temp).encode() in (entry / "cmdline").read_bytes():
                        found.append(int(entry.name))
                except OSError:
                    pass
        return found

    def stop(self) -> None:
        started = self.pids()
        self.process.send_signal(signal.SIGTERM)  # `ray start --block` stops the processes it started
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
        end = time.monotonic() + 30
        while (left := [p for p in started if Path(f"/proc/{p}").exists()]) and time.monotonic() < end:
            time.sleep(1)
        for pid in left:  # only ours, by id
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture
def loopback_head():
    head = LoopbackHead()
    try:
        head.wait_ready()
        yield head
    finally:
        head.stop()


def _simulate(scenario: Path, out: Path, address: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **LOOPBACK_ENV, "RAY_ADDRESS": address}
    return subprocess.run([str(BIN / "fedleak"), "simulate", str(scenario), "--out", str(out), "--executor", "ray"],
                          capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)


@pytest.mark.slow
def test_smoke_runs_its_attacks_on_an_existing_cluster_and_leaves_it_up(loopback_head, tmp_path: Path) -> None:
    before = _python(CLUSTER_STATE, loopback_head.address)
    run = _simulate(ROOT / "scenarios" / "smoke.yaml", tmp_path / "run", loopback_head.address)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [json.loads(line) for line in (tmp_path / "run" / "diagnostics.jsonl").read_text().splitlines()]
    assert lines, "no attack rows"
    node_ids = {n["id"] for n in before["nodes"]}
    for line in lines:
        diagnostics = line.get("diagnostics", line)
        assert diagnostics["ray_cluster"] == loopback_head.address  # ran on this cluster …
        assert diagnostics["ray_node"] in node_ids  # … on one of its nodes
    after = _python(CLUSTER_STATE, loopback_head.address)
    assert after["nodes"] == before["nodes"]  # the cluster is still up: fedleak never stops one it did not start
    assert not [a for a in after["actors"] if a.startswith("fedleak-attacker-")]  # no actor left behind
    assert after["attackers"] == 2


@pytest.mark.slow
def test_a_resource_no_node_offers_is_one_line_naming_it_and_the_nodes(loopback_head, tmp_path: Path) -> None:
    raw = yaml.safe_load((ROOT / "scenarios" / "smoke.yaml").read_text())
    raw["executor"]["resource"] = "gpu_attacker"
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(raw))
    run = _simulate(path, tmp_path / "run", loopback_head.address)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert "executor.resource 'gpu_attacker'" in last and "127.0.0.1" in last and "fedleak_attacker" in last
    assert not (tmp_path / "run").exists()
