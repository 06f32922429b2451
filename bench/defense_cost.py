"""What each defense costs in accuracy and what it buys against the attacks, from the same updates.

    python bench/defense_cost.py [--run-dir DIR] [--out runs/bench-defense-cost.json]

A thin wrapper around ``fedleak simulate scenarios/defenses.yaml``: one federation per defense arm (same seed,
data, model and attack schedule), then the frontier the run writes (frontier.csv: final accuracy, worst-case
median PSNR, success rate, ε per arm). Prints the table and the wall time; the run directory keeps every arm's
own report.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

from bench_io import write_json

from fedleak.drivers.cli.main import main as fedleak

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path,
                        default=Path("runs") / f"bench-defense-cost-{time.strftime('%Y%m%d-%H%M%S')}")
    parser.add_argument("--out", type=Path, help="results as JSON")
    args = parser.parse_args()
    start = time.perf_counter()
    code = fedleak(["simulate", str(ROOT / "scenarios" / "defenses.yaml"), "--out", str(args.run_dir)])
    seconds = time.perf_counter() - start
    path = args.run_dir / "frontier.csv"
    rows = list(csv.DictReader(path.open(newline=""))) if path.is_file() else []
    print(f"\n{len(rows)} arms in {seconds:.0f} s (exit code {code}); {args.run_dir / 'report.html'}")
    for row in rows:
        print("  ".join(f"{key} {value or '–'}" for key, value in row.items()))
    write_json(args.out, {"seconds": seconds, "exit_code": code, "run_dir": str(args.run_dir), "frontier": rows})
    return code


if __name__ == "__main__":
    raise SystemExit(main())
