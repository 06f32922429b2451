"""``fedleak simulate FILE [--out DIR] [--verbose]``: run a scenario on Flower's simulation engine.

Writes the run directory (scenario.yaml, leakage.csv, rounds.csv, images/, figures, report.html) row by row, so an
interrupted run keeps what it had. Exits 1 when the run is incomplete (a round without every client's reply, or a
round that never finished), even where Flower itself reported success.

A scenario with ``arms:`` runs one federation per arm, one after another, each into ``<run dir>/arms/<name>/``
(fedleak.drivers.arms), then writes the comparison at the top: frontier.csv, frontier.png, report.html.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fedleak.drivers.cli.scenario_args import add_set_option, load_with_overrides
from fedleak.errors import UserError
from fedleak.signals import interrupt_on_sigterm, is_interrupt


def add_parser(sub) -> None:
    p = sub.add_parser("simulate", help="run a scenario on Flower's simulation engine and attack every update")
    p.add_argument("scenario", type=Path, help="scenario YAML, e.g. scenarios/hospitals.yaml")
    p.add_argument("--out", type=Path, default=None, help="run directory (default: runs/<name>-<timestamp>/)")
    p.add_argument("--verbose", action="store_true", help="show Flower's and Ray's logs")
    p.add_argument("--executor", choices=["local", "ray"], default=None,
                   help="where attacks run (default: the scenario's executor.kind; auto = ray)")
    add_set_option(p)
    p.add_argument("--dry-run", action="store_true",
                   help="print what would run (rounds, clients per round, scheduled attacks) and exit; "
                        "loads no data and writes nothing")
    add_force(p)
    p.set_defaults(run=run)


def add_force(p) -> None:
    p.add_argument("--force", action="store_true",
                   help="if the output folder holds an earlier run, move it aside to <folder>.old-<time> first")


def run(args) -> int:
    # Quiet Flower/Ray before anything imports flwr: its log level is read once, at import.
    # lazy (start-up): loads only when this command runs, not for every command's parser
    from fedleak.quiet import configure_logging

    configure_logging(args.verbose)
    # lazy (start-up): loads only when this command runs, not for every command's parser
    from fedleak.defaults import run_dir_for

    scenario = load_with_overrides(args.scenario, args.overrides)
    run_dir = run_dir_for(args.out, scenario.output.dir, scenario.name)
    if args.dry_run:
        # lazy (start-up): loads only when this command runs, not for every command's parser
        from fedleak.drivers.cli.dry_run import describe

        print("\n".join(describe(scenario, run_dir, args.executor)))
        print("dry run: nothing was run or written")
        return 0
    claim_run_dir(run_dir, "--out" if args.out else "output.dir", args.force, "simulate")
    with unclaimed_on_error(run_dir), interrupt_on_sigterm():
        try:
            if scenario.arms:
                return _run_arms(scenario, run_dir, args)
            print(f"fedleak simulate: {scenario.name} → {run_dir}", file=sys.stderr)
            return _run_one(scenario, run_dir, args)
        except (KeyboardInterrupt, SystemExit) as exc:
            if not is_interrupt(exc):
                raise
            raise KeyboardInterrupt(_after_interrupt(run_dir)) from None


@contextmanager
def unclaimed_on_error(run_dir: Path) -> Iterator[None]:
    """A run stopped by a bad value before it wrote anything leaves no folder behind (nor a claim in it)."""
    # lazy (start-up): loads only when this command runs, not for every command's parser
    from fedleak.run_claim import release_if_unused

    try:
        yield
    except BaseException:
        release_if_unused(run_dir)
        raise


def _after_interrupt(run_dir: Path) -> str:
    """Stop what the run started (Ray's processes), say what was kept. Further Ctrl-C is ignored meanwhile, so the
    clean-up itself is never cut short."""
    # lazy (start-up): loads only when this command runs, not for every command's parser
    from fedleak.signals import signal_name, stop_descendants

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        stop_descendants()
    finally:
        signal.signal(signal.SIGINT, previous)
    kept = "partial results and report kept in" if (run_dir / "report.html").is_file() else "rows kept in"
    return f"by {signal_name()}; every process it started is stopped; {kept} {run_dir}"


def claim_run_dir(run_dir: Path, option: str, force: bool, command: str) -> None:
    """Claim the run folder before anything is written (fedleak.run_claim): one run per folder; ``--force`` moves
    an earlier run aside instead of mixing the two."""
    # lazy (start-up): loads only when this command runs, not for every command's parser
    from fedleak.run_claim import claim

    aside = claim(run_dir, option=option, force=force, command=command)
    if aside is not None:
        print(f"fedleak {command}: the earlier run in {run_dir} was moved to {aside}", file=sys.stderr)


def _run_arms(scenario, run_dir: Path, args) -> int:
    """One run per arm, in order; the frontier is written even when an arm failed or Ctrl-C stopped the run."""
    # lazy (start-up): loads only when this command runs, not for every command's parser
    from fedleak.drivers.arms import plan, write_top
    from fedleak.provenance import collect, recorded
    from fedleak.report import RunWriter
    from fedleak.report.frontier_page import build_frontier

    arms = plan(scenario, run_dir)
    if scenario.membership is not None or scenario.audit is not None:
        # lazy (start-up): loads only when this command runs, not for every command's parser
        from fedleak.federated_data import FederatedData

        # Every arm shares the data: a held-out split too small for the non-members or the canaries fails here,
        # before any write.
        data = FederatedData(scenario, base_dir=args.scenario.resolve().parent)
        data.check_candidates()
        data.check_canaries()
    write_top(scenario, run_dir)
    status = 0
    record = collect("arms", seed=scenario.seed, device=scenario.device, scenario=scenario.name,
                     arms=[arm.name for arm in arms])
    try:
        with recorded(RunWriter(run_dir).write_run_record, record) as outcome:
            for i, arm in enumerate(arms, 1):
                print(f"fedleak simulate: {scenario.name}, arm {i}/{len(arms)} {arm.name} → {arm.run_dir}",
                      file=sys.stderr)
                # A failed arm does not stop the others: the comparison keeps what every other arm measured.
                status = _run_one(arm.scenario, arm.run_dir, args) or status
            outcome["status"] = "complete" if status == 0 else "incomplete"
    finally:
        try:
            path = build_frontier(run_dir)
            print(f"fedleak simulate: {len(arms)} arms; comparison: {path}", file=sys.stderr)
        except Exception as exc:  # noqa: BLE001 — the arms' directories are on disk; `fedleak report` can retry
            print(f"fedleak simulate: frontier not written ({exc}); run 'fedleak report {run_dir}'",
                  file=sys.stderr)
    return status


def _run_one(scenario, run_dir: Path, args) -> int:
    # lazy (start-up): loads only when this command runs, not for every command's parser
    from fedleak.drivers.simulation import simulate

    try:
        result = simulate(scenario, run_dir=run_dir, base_dir=args.scenario.resolve().parent,
                          executor=args.executor, verbose=args.verbose)
    except (KeyboardInterrupt, SystemExit) as exc:
        if is_interrupt(exc):
            _salvage(run_dir)
        raise
    except UserError:
        raise
    except Exception as exc:
        # Flower wraps any failure of its runtime in "An error was encountered. Ending simulation.": name the root
        # cause in one line, keep what was written, and leave the full log to --verbose.
        if args.verbose:
            raise
        _salvage(run_dir)
        print(f"fedleak simulate: error: the simulation stopped: {_root_cause(exc)}; "
              f"rerun with --verbose for the full log", file=sys.stderr)
        return 1
    skipped = f", {result.attacks_skipped} skipped" if result.attacks_skipped else ""
    print(f"fedleak simulate: {result.attacks_finished} attacks ({result.attacks_failed} failed{skipped}) in "
          f"{result.seconds:.0f} s; report: {run_dir / 'report.html'}", file=sys.stderr)
    if not result.ok:
        for problem in result.problems:
            print(f"fedleak simulate: run incomplete: {problem}", file=sys.stderr)
        return 1
    return 0


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def _salvage(run_dir: Path) -> None:
    """After Ctrl-C: rebuild figures and report.html from the rows written so far."""
    if not (run_dir / "leakage.csv").exists() and not (run_dir / "rounds.csv").exists():
        return
    try:
        # lazy (start-up): loads only when this command runs, not for every command's parser
        from fedleak.report import build_report

        build_report(run_dir)
    except Exception as exc:  # noqa: BLE001 — the rows are on disk; `fedleak report DIR` can retry
        print(f"fedleak simulate: rows kept in {run_dir}; report not rebuilt ({exc}); run "
              f"'fedleak report {run_dir}'", file=sys.stderr)
