"""``fedleak report RUN_DIR``: (re)build figures and report.html from a run directory's CSVs and images."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="build figures and report.html for a run directory")
    p.add_argument("run_dir", type=Path, help="the folder a 'fedleak simulate' run wrote (runs/<name>-<time>/)")
    p.set_defaults(run=run)


def run(args) -> int:
    # lazy (start-up): loads only when this command runs, not for every command's parser
    from fedleak.report import build_report
    from fedleak.report.frontier import is_arms_run
    from fedleak.report.frontier_page import build_frontier

    # A run with arms: each arm's own report, then the comparison on top.
    path = build_frontier(args.run_dir, rebuild_arms=True) if is_arms_run(args.run_dir) else build_report(args.run_dir)
    print(f"wrote {path}")
    return 0
