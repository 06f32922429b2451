"""Run a scenario on Flower's deployment engine on this machine: real SuperLink and SuperNode processes on loopback.

What :func:`deploy` starts, each in its own process group, with its log in ``<run_dir>/logs/``:

- ``flower-superlink`` (Fleet, Control and Runtime APIs on one port); it starts the ServerApp's processes itself;
- one ``flower-supernode`` per client with ``--node-config "partition-id=i num-partitions=N"`` and its own port;
  each starts a ClientApp process per message;
- ``flwr run APP local-deploy --stream`` with ``FLWR_HOME`` in a temporary folder whose ``config.toml`` points at
  the SuperLink, and ``FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1`` (the nodes run this environment).

Flower detaches some of its children (``start_new_session``), so a process group does not hold them all: every
process started here carries an environment marker, and the clean-up ends each process that carries it, by pid,
after the process groups. Linux only (the marker is read from ``/proc/<pid>/environ``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import fedleak
from fedleak.errors import UserError
from fedleak.loopback import foreign_holder, ray_loopback_env
from fedleak.provenance import with_command
from fedleak.quiet import quiet_env
from fedleak.report import RunWriter
from fedleak.signals import interrupt_on_sigterm

#: Set in the environment of every process the launcher starts (inherited by Flower's own children).
MARKER_ENV = "FEDLEAK_DEPLOY_ID"
CONNECTION = "local-deploy"
#: Written by the ServerApp at the end of the run (another process), read by the launcher.
STATUS_FILE = "deploy_status.json"


@dataclass
class DeployResult:
    """What ``fedleak deploy`` reports: the run directory and the ServerApp's own account of the run."""

    run_dir: Path
    seconds: float
    #: Seconds from the end of ``flwr run`` until every process had stopped.
    stop_seconds: float = 0.0
    #: ``FEDLEAK_DEPLOY_ID`` of every process the run started.
    marker: str = ""
    status: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def app_dir() -> Path:
    """The source checkout that holds the Flower app's pyproject.toml (``flwr run`` builds the FAB from it)."""
    root = Path(fedleak.__file__).resolve().parents[1]
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file() or "[tool.flwr.app]" not in pyproject.read_text():
        raise UserError(f"the Flower app's pyproject.toml is not next to the installed package ({root}): "
                        "install fedleak from a source checkout with 'pip install -e .'")
    return root


def free_ports(count: int) -> list[int]:
    """Ports that were free a moment ago on 127.0.0.1 (bound together, so they are distinct)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def flower_config(port: int) -> str:
    """``$FLWR_HOME/config.toml``: one SuperLink connection, the default, to the local SuperLink."""
    return (f'[superlink]\ndefault = "{CONNECTION}"\n\n'
            f'[superlink.{CONNECTION}]\naddress = "127.0.0.1:{port}"\ninsecure = true\n')


def superlink_command(bin_dir: Path, port: int, isolation: str) -> list[str]:
    return [str(bin_dir / "flower-superlink"), "--insecure", "--host", "127.0.0.1", "--port", str(port),
            "--isolation", isolation, "--disable-runtime-dependency-installation"]


def supernode_command(
    bin_dir: Path, superlink_port: int, port: int, partition: int, partitions: int, isolation: str
) -> list[str]:
    return [str(bin_dir / "flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{superlink_port}",
            "--host", "127.0.0.1", "--port", str(port), "--isolation", isolation,
            "--node-config", f"partition-id={partition} num-partitions={partitions}"]


def superexec_command(bin_dir: Path, runtime_port: int) -> list[str]:
    """A SuperExec started on its own (``--isolation process``): it runs the apps of the SuperLink or SuperNode
    whose Runtime API listens on ``runtime_port``, as the containers of docker-compose.yml do."""
    return [str(bin_dir / "flower-superexec"), "--insecure", "--runtime-api-address", f"127.0.0.1:{runtime_port}"]


def write_run_config(path: Path, scenario: Path, run_dir: Path, executor: str | None,
                     overrides: Sequence[str] = ()) -> Path:
    """The run config as a TOML file: ``--run-config 'k="v"'`` cannot carry a path that holds a quote (Flower
    splits the string with a regular expression). JSON's string escapes are valid TOML basic-string escapes.
    ``overrides`` (``--set``) travel as one JSON list, since a run config holds flat values only."""
    values = {"scenario": str(scenario), "out": str(run_dir), "executor": executor or "",
              "overrides": json.dumps(list(overrides)) if overrides else ""}
    path.write_text("".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items()))
    return path


def run_command(bin_dir: Path, app: Path, run_config: Path) -> list[str]:
    return [str(bin_dir / "flwr"), "run", str(app), CONNECTION, "--stream", "--run-config", str(run_config)]


class Processes:
    """The processes of one deployment; :meth:`stop_all` ends every one of them and their children."""

    def __init__(self, log_dir: Path, env: dict[str, str], marker: str | None = None):
        self.log_dir = log_dir
        self.marker = marker or uuid.uuid4().hex
        self.env = {**env, MARKER_ENV: self.marker}
        self.started: dict[str, subprocess.Popen] = {}
        self._logs: list[TextIO] = []

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = (self.log_dir / f"{name}.log").open("w")
        self._logs.append(log)
        # Own process group: Ctrl-C in the terminal reaches the launcher only, which then stops everything in order.
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=self.env, start_new_session=True)
        self.started[name] = process
        return process

    def log_tail(self, name: str, lines: int = 5) -> str:
        path = self.log_dir / f"{name}.log"
        text = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
        return " | ".join(line.strip() for line in text[-lines:])

    def check_alive(self, names: list[str]) -> None:
        for name in names:
            code = self.started[name].poll()
            if code is not None:
                raise DeployError(f"{name} exited with code {code}: {self.log_tail(name)}")

    def marked_pids(self) -> list[int]:
        """Every live process that carries this deployment's marker (Flower's detached children included)."""
        return pids_with_marker(self.marker)

    def stop_all(self, grace_s: float = 10.0) -> list[int]:
        """SIGTERM each process group, then SIGKILL what is left; returns the pids that needed SIGKILL."""
        for process in self.started.values():
            _signal_group(process.pid, signal.SIGTERM)
        for pid in self.marked_pids():
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and (self.marked_pids() or any(p.poll() is None
                                                                          for p in self.started.values())):
            time.sleep(0.2)
        killed = set()
        for process in self.started.values():
            if process.poll() is None:
                _signal_group(process.pid, signal.SIGKILL)
                killed.add(process.pid)
        for pid in self.marked_pids():
            _signal(pid, signal.SIGKILL)
            killed.add(pid)
        for process in self.started.values():
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        # SIGKILL is delivered asynchronously: wait until the killed processes are gone (or zombies).
        deadline = time.monotonic() + 5
        while killed and self.marked_pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        for log in self._logs:
            log.close()
        return sorted(killed)


class DeployError(Exception):
    """The deployment itself failed (a process died, the run timed out): the run directory may be partial."""


def pids_with_marker(marker: str) -> list[int]:
    """Live processes of this user whose environment holds ``FEDLEAK_DEPLOY_ID=marker`` (zombies excluded)."""
    needle = f"{MARKER_ENV}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # gone, or another user's
        if state != "Z":
            found.append(int(entry.name))
    return found


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_for_port(port: int, timeout_s: float, processes: Processes, name: str) -> None:
    """Wait until ``name`` listens on ``port``; refuse a port that another server holds too (it would receive what
    ``flwr run`` and the SuperNodes send)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        processes.check_alive([name])
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                check_port_is_ours(port, processes, name)
                return
        time.sleep(0.2)
    raise DeployError(f"{name} did not open port {port} within {timeout_s:.0f} s: {processes.log_tail(name)}")


def check_port_is_ours(port: int, processes: Processes, name: str) -> None:
    """Only processes this deployment started may listen on ``port``: another server on it (one that took the
    port after :func:`free_ports` saw it free, or shares it through SO_REUSEPORT) is refused before anything talks
    to it."""
    ours = {process.pid for process in processes.started.values()} | set(processes.marked_pids())
    problem = foreign_holder(port, ours)
    if problem is not None and "nothing listens" not in problem:
        raise DeployError(f"{name}: {problem}; stop that server or run again (another free port is chosen)")


def deploy(
    scenario_path: Path,
    run_dir: Path,
    *,
    num_clients: int,
    executor: str | None = None,
    timeout_s: float | None = None,
    verbose: bool = False,
    isolation: str = "subprocess",
    marker: str | None = None,
    say: Any = None,
    watch: Any = None,
    overrides: Sequence[str] = (),
    ray_address: str | None = None,
) -> DeployResult:
    """Run ``scenario_path`` on Flower's deployment engine on loopback and return the ServerApp's account of it.

    Args:
        scenario_path: a valid scenario file (already checked by the caller).
        run_dir: the run directory the ServerApp writes (absolute; created).
        num_clients: the scenario's client count: one SuperNode each.
        executor: ``local``, ``ray`` or ``None`` (the scenario's ``executor.kind``).
        timeout_s: stop everything after this many seconds (``None``: wait for the run).
        verbose: Flower's INFO logs in the log files.
        isolation: ``subprocess`` (the SuperLink and SuperNodes start app processes) or ``process`` (one SuperExec
            each, the docker-compose topology).
        marker: the value of ``FEDLEAK_DEPLOY_ID`` in every process started (default: a new random one).
        say: called with one-line progress messages.
        watch: called about twice a second while the run goes on (the command's progress reads the run directory).
        overrides: ``--set KEY=VALUE`` overrides, applied to the scenario on every node.
        ray_address: the Ray cluster the attackers join (``None``: the ServerApp's own Ray, on 127.0.0.1).
    """
    say = say or (lambda _line: None)
    app = app_dir()  # before anything starts: a missing app folder is one line, not a half-started federation
    bin_dir = Path(sys.executable).parent
    run_dir = run_dir.resolve()
    log_dir = run_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fedleak-flwr-home-") as flwr_home, interrupt_on_sigterm():
        # The SuperLink and SuperNodes start flower-superexec / flwr-serverapp / flwr-clientapp through PATH.
        env = {**os.environ, **quiet_env(verbose), **ray_loopback_env(ray_address), "FLWR_HOME": flwr_home,
               "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
        superlink_port, *node_ports = free_ports(1 + num_clients)
        Path(flwr_home, "config.toml").write_text(flower_config(superlink_port))
        processes = Processes(log_dir, env, marker)
        try:
            nodes = start_federation(processes, bin_dir, superlink_port, node_ports, isolation)
            say(f"SuperLink 127.0.0.1:{superlink_port}, SuperNodes {node_ports[0]}–{node_ports[-1]}; logs: {log_dir}")
            run_config = write_run_config(Path(flwr_home, "run_config.toml"), scenario_path.resolve(), run_dir,
                                          executor, overrides)
            run = processes.start("flwr-run", run_command(bin_dir, app, run_config))
            run_code = wait_for_run(run, processes, ["superlink", *nodes], timeout_s, log_dir, watch)
        finally:
            stopping = time.perf_counter()
            leftovers = processes.stop_all()
            stop_seconds = time.perf_counter() - stopping
            if leftovers:
                say(f"killed {len(leftovers)} process(es) that ignored SIGTERM")
    return collect_result(run_dir, processes, run_code, time.perf_counter() - start, stop_seconds)


def start_federation(processes: Processes, bin_dir: Path, superlink_port: int, node_ports: list[int],
                     isolation: str) -> list[str]:
    """Start the SuperLink, one SuperNode per port (and, with ``process`` isolation, their SuperExecs); return the
    names of the processes besides the SuperLink that must stay alive."""
    processes.start("superlink", superlink_command(bin_dir, superlink_port, isolation))
    wait_for_port(superlink_port, 60, processes, "superlink")
    nodes = []
    for partition, port in enumerate(node_ports):
        name = f"supernode-{partition}"
        processes.start(name, supernode_command(bin_dir, superlink_port, port, partition, len(node_ports),
                                                isolation))
        nodes.append(name)
    if isolation == "process":
        processes.start("superexec-serverapp", superexec_command(bin_dir, superlink_port))
        nodes.append("superexec-serverapp")
        for partition, port in enumerate(node_ports):
            wait_for_port(port, 60, processes, f"supernode-{partition}")
            processes.start(f"superexec-clientapp-{partition}", superexec_command(bin_dir, port))
            nodes.append(f"superexec-clientapp-{partition}")
    return nodes


def wait_for_run(run: subprocess.Popen, processes: Processes, alive: list[str], timeout_s: float | None,
                 log_dir: Path, watch: Any = None) -> int:
    """Wait for ``flwr run`` to end while every process in ``alive`` keeps running; its exit code."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while run.poll() is None:
        processes.check_alive(alive)
        if watch is not None:
            watch()
        if deadline is not None and time.monotonic() > deadline:
            raise DeployError(f"the run did not finish within {timeout_s:.0f} s; logs in {log_dir}")
        time.sleep(0.5)
    return run.returncode


def _record_command(run_dir: Path) -> None:
    """The ServerApp wrote run.json in its own process; the command line the user typed is this one's."""
    record = with_command(run_dir)
    if record is not None:
        RunWriter(run_dir).write_run_record(record)


def collect_result(run_dir: Path, processes: Processes, run_code: int, seconds: float,
                   stop_seconds: float) -> DeployResult:
    """The ServerApp's account of the run (its status file), plus what went wrong with ``flwr run`` itself."""
    result = DeployResult(run_dir=run_dir, seconds=seconds, stop_seconds=stop_seconds, marker=processes.marker)
    _record_command(run_dir)
    status_path = run_dir / STATUS_FILE
    if status_path.is_file():
        result.status = json.loads(status_path.read_text())
        result.problems = list(result.status.get("problems", []))
    else:
        result.problems = [f"the ServerApp wrote no {status_path.name}: {processes.log_tail('flwr-run')}"]
    if run_code != 0:
        result.problems.append(f"flwr run exited with code {run_code}: {processes.log_tail('flwr-run')}")
    return result
