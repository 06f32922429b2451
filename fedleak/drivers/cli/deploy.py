"""``fedleak deploy FILE [--out DIR]``: run a scenario on Flower's deployment engine, as separate processes on loopback.

One ``flower-superlink``, one ``flower-supernode`` per client and ``flwr run`` (see
fedleak/drivers/deploy_launcher.py); every process is stopped at the end, also after Ctrl-C or an error. Writes the
same run directory as ``fedleak simulate``, plus ``logs/`` (one log per process) and ``deploy_status.json`` (the
ServerApp's account of the run). Exits 1 when the run is incomplete.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fedleak.drivers.cli.scenario_args import add_set_option, load_with_overrides
from fedleak.drivers.cli.simulate import add_force


def add_parser(sub) -> None:
    p = sub.add_parser("deploy", help="run a scenario on Flower's deployment engine (SuperLink + SuperNodes on "
                                      "loopback) and attack every update")
    p.add_argument("scenario", type=Path, help="scenario YAML, e.g. scenarios/hospitals.yaml")
    p.add_argument("--out", type=Path, default=None, help="run directory (default: runs/<name>-<timestamp>/)")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="where attacks run, inside the ServerApp's process (default: local, in-process)")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="stop every process after this many seconds (default: wait for the run)")
    p.add_argument("--isolation", choices=["subprocess", "process"], default="subprocess",
                   help="process: a separate SuperExec per SuperLink/SuperNode starts the apps, as in "
                        "docker-compose.yml (default: subprocess, the SuperLink/SuperNodes start them)")
    p.add_argument("--verbose", action="store_true", help="Flower's INFO logs in the log files")
    add_set_option(p)
    add_force(p)
    p.set_defaults(run=run)


def run(args) -> int:
    # lazy (start-up): loads only when this command runs, not for every command's parser
    from fedleak.defaults import run_dir_for
    from fedleak.drivers.deploy_launcher import DeployError, deploy
    from fedleak.errors import UserError
    from fedleak.runtime.cluster import cluster_address

    # Checked here (one line, exit 2); the ServerApp and every ClientApp apply the same overrides to the same file.
    scenario = load_with_overrides(args.scenario, args.overrides)
    if scenario.arms:
        raise UserError(f"{args.scenario}: arms: fedleak deploy runs one federation; run arms with fedleak simulate")
    check_data(scenario, args.scenario.resolve().parent)
    if args.timeout is not None and args.timeout <= 0:
        raise UserError(f"--timeout {args.timeout:g}: give a positive number of seconds")
    run_dir = run_dir_for(args.out, scenario.output.dir, scenario.name)
    # lazy (start-up): loads only when this command runs, not for every command's parser
    from fedleak.drivers.cli.simulate import claim_run_dir

    claim_run_dir(run_dir, "--out" if args.out else "output.dir", args.force, "deploy")

    def say(line: str) -> None:
        print(f"fedleak deploy: {line}", file=sys.stderr)

    # lazy (start-up): loads only when this command runs, not for every command's parser
    from fedleak.drivers.cli.run_files_progress import RunFilesProgress
    from fedleak.server.schedule import planned_attacks

    scheduled = len(planned_attacks(scenario))
    say(f"{scenario.name} → {run_dir}: {scenario.training.rounds} rounds, {scheduled} attacks scheduled")
    watch = RunFilesProgress(run_dir, scenario.training.rounds, scheduled, say)
    try:
        result = deploy(args.scenario, run_dir, num_clients=scenario.clients.count, executor=args.executor,
                        timeout_s=args.timeout, verbose=args.verbose, isolation=args.isolation, say=say,
                        watch=watch, overrides=args.overrides,
                        ray_address=cluster_address(scenario.executor.address))
    except DeployError as exc:
        say(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        say(f"every process stopped; rows written so far are in {run_dir}, logs in {run_dir / 'logs'}")
        raise
    status = result.status
    if status:
        say(f"{status.get('attacks_finished', 0)} attacks ({status.get('attacks_failed', 0)} failed); "
            f"{result.seconds:.0f} s in all ({status.get('seconds', 0):.0f} s in the ServerApp, "
            f"{result.stop_seconds:.0f} s to stop the processes); report: {run_dir / 'report.html'}")
    for problem in result.problems:
        say(f"run incomplete: {problem}")
    return 0 if result.ok else 1


def check_data(scenario, base_dir: Path) -> None:
    """Find bad data settings here (one line, exit 2) rather than inside the ServerApp's process."""
    # lazy (start-up): loads only when this command runs, not for every command's parser
    from fedleak.federated_data import FederatedData

    data = FederatedData(scenario, base_dir=base_dir)
    data.check_batches()
    data.check_candidates()
    data.check_canaries()
