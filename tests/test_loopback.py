"""Nothing fedleak starts listens outward: the listening sockets of every process of each way of running are on
loopback, and the deployment launcher refuses a port another server also holds.

The slow test runs ``fedleak simulate`` and ``fedleak deploy`` (local and Ray executors, both isolation modes) as
child processes and samples, every 0.2 s, the listening TCP sockets of the child and all its descendants (and of
every process carrying the deployment's marker) from ``/proc``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from fedleak.drivers.deploy_launcher import MARKER_ENV, DeployError, Processes, check_port_is_ours, pids_with_marker
from fedleak.loopback import (
    Listener,
    _decode_address,
    foreign_holder,
    listeners,
    ray_init_loopback_args,
    ray_loopback_env,
)

TINY = {
    "name": "tiny-loopback", "seed": 0,
    "data": {"dataset": "mnist", "source": "bundled", "eval_fraction": 0.0},
    "clients": {"count": 2, "overrides": [{"client": 0, "batch_size": 1}]},
    "training": {"rounds": 1, "update": "gradient", "lr": 0.1, "batch_size": 2, "model": "lenet", "init": "paper"},
    "attacks": [{"name": "idlg", "params": {"iterations": 5}}],
    "executor": {"workers": 1, "timeout_s": 60},
}


# --- fast: the readers and the checks -----------------------------------------------------------------------------


def test_proc_addresses_decode_in_host_byte_order() -> None:
    assert _decode_address("0100007F") == "127.0.0.1"
    assert _decode_address("00000000") == "0.0.0.0"
    assert _decode_address("00000000000000000000000001000000") == "::1"
    assert _decode_address("0000000000000000FFFF00000100007F") == "::ffff:7f00:1"  # ::ffff:127.0.0.1


def test_loopback_tells_inward_from_outward_listeners() -> None:
    assert Listener("127.0.0.1", 1, frozenset()).loopback
    assert Listener("::1", 1, frozenset()).loopback
    assert Listener("::ffff:127.0.0.1", 1, frozenset()).loopback
    assert not Listener("0.0.0.0", 1, frozenset()).loopback
    assert not Listener("::", 1, frozenset()).loopback
    assert not Listener("10.1.2.3", 1, frozenset()).loopback


def test_a_socket_this_process_listens_on_is_found_with_its_pid() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        found = [item for item in listeners({os.getpid()}) if item.port == port]
        assert found == [Listener("127.0.0.1", port, frozenset({os.getpid()}))]
        assert foreign_holder(port, {os.getpid()}) is None
        assert str(os.getpid()) in foreign_holder(port, {1})
    assert "nothing listens" in foreign_holder(port, {os.getpid()})


def test_the_launcher_refuses_a_superlink_port_another_server_holds(tmp_path) -> None:
    processes = Processes(tmp_path, dict(os.environ))
    with socket.socket() as impostor:
        impostor.bind(("127.0.0.1", 0))
        impostor.listen()
        port = impostor.getsockname()[1]
        with pytest.raises(DeployError, match=f"superlink: port {port} is also held by process"):
            check_port_is_ours(port, processes, "superlink")


def test_ray_started_by_fedleak_is_told_to_stay_on_loopback(monkeypatch) -> None:
    monkeypatch.delenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert ray_loopback_env(None) == {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    assert ray_loopback_env("10.0.0.5:6379") == {}  # a cluster the user names is joined as it is
    assert ray_init_loopback_args({}) == {"_node_ip_address": "127.0.0.1", "include_dashboard": False}
    assert ray_init_loopback_args({"address": "auto"}) == {}
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "1")
    assert ray_loopback_env(None) == {}  # the user's own setting wins


# --- slow: every way of running, sampled while it runs -------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(parent, []).append(int(entry.name))
    return tree


def _family(root: int) -> set[int]:
    """``root``, its descendants, and every process carrying the deployment marker one of them carries."""
    tree, found, todo = _children(), set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(tree.get(pid, []))
    for pid in list(found):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in environ:
            if item.startswith(MARKER_ENV.encode() + b"="):
                found |= set(pids_with_marker(item.split(b"=", 1)[1].decode()))
    return found


def _commands(pids: set[int]) -> dict[int, str]:
    names = {}
    for pid in pids:
        try:
            names[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
        except OSError:
            pass
    return names


def _listeners_during(argv: list[str], timeout_s: float) -> tuple[set[Listener], dict[int, str], int, str]:
    command = [sys.executable, "-c", "import sys; from fedleak.drivers.cli.main import main; sys.exit(main())", *argv]
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    seen: set[Listener] = set()
    names: dict[int, str] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while process.poll() is None and time.monotonic() < deadline:
            family = _family(process.pid)
            found = listeners(family)
            seen |= set(found)
            names.update(_commands({pid for item in found for pid in item.pids}))
            time.sleep(0.2)
    finally:
        if process.poll() is None:
            process.terminate()
    _, err = process.communicate(timeout=120)
    return seen, names, process.returncode, err


WAYS = {
    "simulate-local": ["simulate", "--executor", "local"],
    "simulate-ray": ["simulate", "--executor", "ray"],
    "deploy-local": ["deploy", "--executor", "local"],
    "deploy-ray-subprocess": ["deploy", "--executor", "ray", "--isolation", "subprocess"],
    "deploy-ray-process": ["deploy", "--executor", "ray", "--isolation", "process"],
}


@pytest.mark.slow
@pytest.mark.parametrize("way", list(WAYS))
def test_every_listening_socket_of_every_way_of_running_is_on_loopback(tmp_path, way) -> None:
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(yaml.safe_dump(TINY))
    command, *options = WAYS[way]
    seen, names, code, err = _listeners_during([command, str(scenario), "--out", str(tmp_path / "run"), *options],
                                               timeout_s=300)
    assert code == 0, err[-2000:]
    assert seen, "no listening socket was seen: the sampler missed the run"
    outward = sorted(f"{item.address}:{item.port} ({'; '.join(names.get(p, str(p)) for p in item.pids)})"
                     for item in seen if not item.loopback)
    assert not outward, f"{way} listens outward: {outward}"
    programs = " ".join(names.values())
    expected = {"simulate-local": [], "simulate-ray": ["gcs_server", "raylet"],
                "deploy-local": ["flower-superlink", "flower-supernode"],
                "deploy-ray-subprocess": ["flower-superlink", "flwr-serverapp", "gcs_server", "raylet"],
                "deploy-ray-process": ["flower-superlink", "flwr-serverapp", "gcs_server", "raylet"]}[way]
    for program in expected:
        assert program in programs, f"{program} listened on nothing that was seen: {sorted(set(names.values()))}"
