"""What interception and the Ray attack pool cost or gain, measured side by side in one process.

1. Interception overhead: the same scenario with attacks off, once with the intercepting strategy and once with the
   plain strategy. Reports the median seconds per round (round 1, which starts Ray's workers, excluded) and the
   ratio; plus the time spent inside the interceptor itself as a share of the rounds (the finer measure: round
   times are quantised by Flower's 0.1 s reply polling). Target: overhead < 10 %.
2. Executors: the same scenario with attacks on, attacks in-process (serial, on the ServerApp thread) versus on the
   Ray actor pool (beside training). Reports the time from round 1 until the last attack was scored, and the
   speed-up ratio.

Usage: ``python bench/sim_overhead.py [--scenario scenarios/hospitals.yaml] [--rounds 20] [--skip-executors]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from fedleak.drivers.scenarios import load_scenario
from fedleak.drivers.simulation import ServerSide, run_on_flower
from fedleak.quiet import configure_logging

ROOT = Path(__file__).resolve().parents[1]


def per_round(result) -> float:
    times = result.seconds_per_round()[1:]  # round 1 includes Ray worker start-up
    return statistics.median(times)


def train_only(scenario, base_dir: Path, ray_dir: Path, intercept: bool):
    """The federation without attacks or output, with or without the interceptor's tap."""
    def prepare():
        return ServerSide.prepare(scenario, base_dir=base_dir, attacks=False, intercept=intercept, write=False,
                                  progress=False)

    return run_on_flower(scenario, prepare, base_dir=base_dir, attacks_on_ray=False, ray_temp_dir=ray_dir)


def attacks_without_output(scenario, base_dir: Path, ray_dir: Path, kind: str):
    """The federation with its attacks on the ``kind`` executor, writing nothing."""
    def prepare():
        return ServerSide.prepare(scenario, base_dir=base_dir, executor=kind, write=False, progress=False)

    return run_on_flower(scenario, prepare, base_dir=base_dir, attacks_on_ray=kind == "ray", ray_temp_dir=ray_dir)


def interception_overhead(scenario, base_dir: Path, ray_dir: Path, repeats: int) -> None:
    print(f"[interception] {scenario.name}: {scenario.training.rounds} rounds, "
          f"{scenario.clients.count} clients, attacks off, {repeats} run(s) each, alternating")
    off, on, share = [], [], []
    for _ in range(repeats):
        plain = train_only(scenario, base_dir, ray_dir, intercept=False)
        tapped = train_only(scenario, base_dir, ray_dir, intercept=True)
        off.append(per_round(plain))
        on.append(per_round(tapped))
        rounds_total = sum(tapped.seconds_per_round())
        share.append(tapped.tap_seconds / rounds_total)
    off_s, on_s = statistics.median(off), statistics.median(on)
    print(f"  seconds per round: plain {off_s:.4f}, intercepted {on_s:.4f} → ratio {on_s / off_s:.3f} "
          f"({100 * (on_s / off_s - 1):+.1f} %)")
    print(f"  time inside the interceptor: {100 * statistics.median(share):.2f} % of the round time")


def executor_speedup(scenario, base_dir: Path, ray_dir: Path) -> None:
    jobs = "attacks: " + ", ".join(a.name for a in scenario.attacks)
    print(f"[executors] {scenario.name}: {scenario.training.rounds} rounds, {scenario.clients.count} clients, {jobs}, "
          f"{scenario.executor.workers} Ray workers")
    walls = {}
    for kind in ("local", "ray"):
        result = attacks_without_output(scenario, base_dir, ray_dir, kind)
        if not result.ok:
            print(f"  {kind}: run incomplete: {result.problems}")
        walls[kind] = result.work_seconds
        print(f"  {kind:5s}: {result.work_seconds:.1f} s from round 1 to the last scored attack "
              f"({result.attacks_finished} attacks, {result.attacks_failed} failed); total {result.seconds:.1f} s")
    print(f"  speed-up of the Ray pool over in-process: {walls['local'] / walls['ray']:.2f}×")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", type=Path, default=ROOT / "scenarios" / "hospitals.yaml")
    parser.add_argument("--rounds", type=int, default=20, help="rounds for the interception comparison")
    parser.add_argument("--repeats", type=int, default=1, help="alternating repeats of the interception pair")
    parser.add_argument("--skip-executors", action="store_true")
    parser.add_argument("--skip-interception", action="store_true")
    args = parser.parse_args()
    configure_logging(verbose=False)
    scenario = load_scenario(args.scenario)
    base_dir = args.scenario.resolve().parent
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ray") as ray_dir:
        if not args.skip_interception:
            training = scenario.training.model_copy(update={"rounds": args.rounds})
            interception_overhead(scenario.model_copy(update={"training": training}), base_dir, Path(ray_dir),
                                  args.repeats)
        if not args.skip_executors:
            executor_speedup(scenario, base_dir, Path(ray_dir))
    print(f"bench finished in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
