"""What a round costs as the federation grows, and whether the attackers keep up.

1. Clients: 10, 100 and 1000 registered, 10 sampled per round, FedSGD on DLG's LeNet (batch 1, bundled MNIST),
   R-CONV on every sampled update (an analytic attack: about a second each). Each setting runs in its own process,
   once without attacks and once with them, for ``--rounds`` rounds: median seconds per round (round 1, with Ray's
   start-up and the query to every node, reported apart), the attack backlog (attacks not yet scored) at the end of
   every round, and the driver's peak resident memory.
2. Attacker pool: the same R-CONV jobs on a Ray pool of 1 and of 2 workers, alternating, in one process: attacks
   per second and their ratio.

Usage: ``python bench/scale.py [--rounds 20] [--clients 10 100 1000] [--jobs 24] [--out bench/results/scale.json]``
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def scenario_dict(registered: int, rounds: int, attacks: bool) -> dict:
    return {
        "name": f"scale-{registered}", "seed": 0,
        "data": {"dataset": "mnist", "source": "bundled", "eval_fraction": 0.1},
        "clients": {"count": registered, "per_round": min(10, registered)},
        "training": {"rounds": rounds, "update": "gradient", "lr": 0.1, "batch_size": 1, "model": "lenet",
                     "init": "paper"},
        "attacks": [{"name": "rconv"}] if attacks else [],
        "executor": {"workers": 2, "timeout_s": 120},
        "output": {"save_images": False},
    }


def one_run(registered: int, rounds: int, attacks: bool) -> dict:
    """Run one setting in this process (called in a child process) and return its figures."""
    from fedleak.drivers.scenarios import parse_scenario
    from fedleak.drivers.simulation import simulate

    scenario = parse_scenario(scenario_dict(registered, rounds, attacks))
    with tempfile.TemporaryDirectory(prefix="scale-") as folder:
        result = simulate(scenario, run_dir=Path(folder) / "run", executor="ray", progress=False, report=False)
        with open(Path(folder) / "run" / "rounds.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
    seconds = result.seconds_per_round()
    return {
        "registered": registered, "attacks": attacks, "ok": result.ok, "problems": result.problems,
        "first_round_s": seconds[0], "median_round_s": statistics.median(seconds[1:]),
        "backlog": [int(r.get("attacks_pending") or 0) for r in rows],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "attacks_finished": result.attacks_finished,
    }


def in_child(registered: int, rounds: int, attacks: bool) -> dict:
    """Each setting in a fresh process, so peak memory belongs to that setting alone."""
    code = (f"import json, sys; sys.path.insert(0, {str(ROOT / 'bench')!r}); import scale; "
            f"print(json.dumps(scale.one_run({registered}, {rounds}, {attacks})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def pool_ratio(jobs: int, repeats: int, address: str | None = None) -> dict:
    """Attacks per second on Ray pools of 1 and 2 workers, on the same R-CONV jobs, alternating; on the Ray
    cluster at ``address`` when given (it must offer the ``fedleak_attacker`` resource), else a private one."""
    import torch

    from fedleak.config.schema import AttackConfig
    from fedleak.observe import observe
    from fedleak.runtime.ray_pool import RayPoolExecutor
    from fedleak.training import batch_gradient
    from fedleak.types import ModelSpec, ThreatModel

    spec = ModelSpec("lenet", 1, 28, 10)
    torch.manual_seed(0)
    model = spec.build()
    observations = []
    for job in range(jobs):
        image, label = torch.rand(1, 1, 28, 28), torch.tensor([job % 10])
        observations.append(observe(spec, model.state_dict(), batch_gradient(model, image, label), "gradient",
                                    ThreatModel(), metadata={"round": 1, "client": job, "batch_size": 1}))
    attack = AttackConfig(name="rconv")
    rates: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(repeats):
        for workers in (1, 2):
            init = {"address": address} if address else {"include_dashboard": False}
            pool = RayPoolExecutor(workers=workers, timeout_s=300, max_in_flight=jobs, resource="fedleak_attacker",
                                   ray_init_args=init)
            try:
                pool.submit(observations[0], attack, None)  # start the actors before the clock
                pool.drain()
                start = time.perf_counter()
                for observation in observations:
                    pool.submit(observation, attack, None)
                pool.drain()
                rates[workers].append(jobs / (time.perf_counter() - start))
            finally:
                pool.close()
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    return {"jobs": jobs, "repeats": repeats, "address": address, "attacks_per_s_1": one, "attacks_per_s_2": two,
            "ratio": two / one}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--pool-only", action="store_true", help="measure the attacker pool only")
    parser.add_argument("--address", help="measure the pool on this Ray cluster (HOST:PORT) instead of a private one")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scale.json")
    args = parser.parse_args()
    from bench_io import write_json

    runs = []
    for registered in [] if args.pool_only else args.clients:
        for attacks in (False, True):
            run = in_child(registered, args.rounds, attacks)
            runs.append(run)
            print(f"{registered:5d} registered, attacks {'on ' if attacks else 'off'}: round 1 "
                  f"{run['first_round_s']:.1f} s, then median {run['median_round_s']:.2f} s/round, backlog per round "
                  f"{run['backlog']}, driver peak {run['peak_rss_mib']:.0f} MiB, ok={run['ok']}")
    pool = pool_ratio(args.jobs, args.repeats, args.address)
    print(f"attacker pool: {pool['attacks_per_s_1']:.2f} attacks/s with 1 worker, {pool['attacks_per_s_2']:.2f} with 2 "
          f"→ ratio {pool['ratio']:.2f}")
    write_json(args.out, {"runs": runs, "pool": pool})


if __name__ == "__main__":
    main()
