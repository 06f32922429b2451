"""The Flower app for the deployment engine: module-level ``server_app`` and ``client_app``.

On the deployment engine the SuperLink and each SuperNode start the apps in their own processes from the
references in pyproject's ``[tool.flwr.app.components]``, so the apps cannot be built from a scenario object as
``fedleak simulate`` builds them. They read the run config instead, which carries only flat values
(``[tool.flwr.app.config]``): the scenario's path, the run directory and the attack executor. Both sides then
build the very same ServerApp / ClientApp the simulation uses and hand them the message.

The FAB carries pyproject.toml and ``scenarios/*.yaml`` only (``fab-include``): the code is the installed
``fedleak`` package on every node, because ``fedleak.clients``/``.server``/``.attacks`` are mapped from other
folders at install time and would not import from the FAB's copy of the tree.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from fedleak.config.schema import Scenario
from fedleak.drivers.deploy_launcher import STATUS_FILE
from fedleak.errors import UserError

#: The run-config keys declared in pyproject's [tool.flwr.app.config] (``flwr run`` refuses any other).
SCENARIO_KEY = "scenario"
OUT_KEY = "out"
EXECUTOR_KEY = "executor"
OVERRIDES_KEY = "overrides"
RUN_CONFIG_KEYS = (SCENARIO_KEY, OUT_KEY, EXECUTOR_KEY, OVERRIDES_KEY)


def app_dirs() -> list[Path]:
    """Folders a relative scenario path may be relative to: the unpacked FAB (Flower puts it on ``sys.path``;
    ``Context`` does not name it), then the working directory."""
    found = [Path(entry) for entry in sys.path if entry and (Path(entry) / "pyproject.toml").is_file()]
    return [*found, Path.cwd()]


def resolve_scenario_path(text: str, roots: list[Path] | None = None) -> Path:
    """The scenario file named in the run config: absolute as is, else the first of ``roots`` that holds it."""
    if not text:
        raise UserError(f"run config {SCENARIO_KEY!r} is empty: pass --run-config 'scenario=\"path/to/file.yaml\"'")
    path = Path(text)
    if path.is_absolute():
        candidates = [path]
    else:
        candidates = [root / path for root in (roots if roots is not None else app_dirs())]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise UserError(f"run config {SCENARIO_KEY!r}: no such file {text} (looked in "
                    f"{', '.join(str(c.parent) for c in candidates)})")


def read_overrides(run_config: dict[str, Any]) -> list[str]:
    """The ``--set`` overrides the launcher put in the run config (a JSON list; empty: none)."""
    text = str(run_config.get(OVERRIDES_KEY, "") or "")
    try:
        overrides = json.loads(text) if text else []
    except json.JSONDecodeError:
        overrides = None
    if not isinstance(overrides, list) or not all(isinstance(item, str) for item in overrides):
        raise UserError(f"run config {OVERRIDES_KEY!r}: {text!r} is not a JSON list of \"KEY=VALUE\" strings")
    return overrides


def read_run_config(run_config: dict[str, Any]) -> tuple[Scenario, Path, Path | None, str | None]:
    """Scenario, its folder (relative data paths), run directory (``None``: the default) and executor kind."""
    # lazy (start-up): the ServerApp and each ClientApp process load only their own side
    from fedleak.drivers.cli.scenario_args import load_with_overrides

    path = resolve_scenario_path(str(run_config.get(SCENARIO_KEY, "")))
    scenario = load_with_overrides(path, read_overrides(run_config))
    out = str(run_config.get(OUT_KEY, "") or "")
    executor = str(run_config.get(EXECUTOR_KEY, "") or "") or None
    if executor not in (None, "local", "ray"):
        raise UserError(f"run config {EXECUTOR_KEY!r}: {executor!r} is not one of local, ray (or empty)")
    return scenario, path.parent, Path(out) if out else None, executor


server_app = ServerApp()


@server_app.main()
def server_main(grid: Grid, context: Context) -> None:
    """Set up what simulate sets up around the ServerApp, run the rounds, drain the attacks, write the report."""
    # lazy (start-up): the ServerApp and each ClientApp process load only their own side
    from fedleak.drivers.simulation import ServerSide
    from fedleak.quiet import configure_logging

    configure_logging(verbose=False)
    scenario, base_dir, run_dir, executor = read_run_config(dict(context.run_config))
    # Progress goes to this process's stderr as plain lines: the SuperLink's log, not a terminal.
    server = ServerSide.prepare(scenario, run_dir=run_dir, base_dir=base_dir, executor=executor,
                                 kind="deploy")
    problems: list[str] = []
    try:
        with server.display:
            server.server_app()(grid=grid, context=context)
    except BaseException as exc:
        # Stopped (the launcher's SIGTERM arrives as KeyboardInterrupt) or failed: await no more attacks.
        server.stop.set()
        problems.append(f"ServerApp stopped: {type(exc).__name__}: {exc}".splitlines()[0])
        raise
    finally:
        try:
            result = server.result(report=True)
        except Exception as exc:  # noqa: BLE001 — the rows are on disk; `fedleak report DIR` can retry
            problems.append(f"report not built: {type(exc).__name__}: {exc}".splitlines()[0])
            result = server.result(report=False)
        write_status(result, problems)


def write_status(result: Any, extra_problems: list[str]) -> None:
    """The result in the run directory, for the launcher (another process) to check and print."""
    if result.run_dir is None:
        return
    status = {
        "problems": [*extra_problems, *result.problems],
        "attacks_finished": result.attacks_finished,
        "attacks_failed": result.attacks_failed,
        "seconds": round(result.seconds, 3),
        "round_seconds": [round(s, 3) for s in result.seconds_per_round()],
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    (Path(result.run_dir) / STATUS_FILE).write_text(json.dumps(status, indent=2) + "\n")


client_app = ClientApp()
#: The simulation's ClientApp per run id: the run's scenario file is read and validated once per process and run.
_client_apps: dict[int, ClientApp] = {}


def _scenario_client_app(context: Context) -> ClientApp:
    """The simulation's ClientApp for the run's scenario (a SuperNode may reuse its ClientApp process)."""
    # lazy (start-up): the ServerApp and each ClientApp process load only their own side
    from fedleak.clients.app import build_client_app

    if context.run_id not in _client_apps:
        scenario, base_dir, _, _ = read_run_config(dict(context.run_config))
        _client_apps[context.run_id] = build_client_app(scenario, base_dir)
    return _client_apps[context.run_id]


@client_app.train()
def client_train(msg: Message, context: Context) -> Message:
    return _scenario_client_app(context)(msg, context)


@client_app.evaluate()
def client_evaluate(msg: Message, context: Context) -> Message:
    return _scenario_client_app(context)(msg, context)


@client_app.query()
def client_query(msg: Message, context: Context) -> Message:
    """Which client this node is (the server asks once, to address the clients it samples per round)."""
    return _scenario_client_app(context)(msg, context)
