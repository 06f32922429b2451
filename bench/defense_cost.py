"""What each defense costs in accuracy, and what it buys against the attacks, from real Flower runs.

    python bench/defense_cost.py                     # accuracy runs + the leakage run, a few minutes on 2 cores
    python bench/defense_cost.py --skip-leakage --out runs/bench-defense-cost.json

1. Accuracy: ``scenarios/defense_cost.yaml`` (FedAvg, 15 rounds, no attacks) once per defense, every client
   applying it; the defenses are those of ``scenarios/defenses.yaml`` (its training default and each client's
   override), so both measurements cover the same list.
2. Leakage: ``scenarios/defenses.yaml`` once (FedSGD, batch size 1, each client one defense, iDLG and R-CONV):
   median PSNR per image of each attack per defense.

The two regimes differ on purpose: leakage is measured where it is worst (one image per update, first rounds),
accuracy where the model learns (batches of 32, 150 local steps). Runs are sequential in one process.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path

from bench_io import write_json

from fedleak.clients.defenses import defense_label
from fedleak.config.loader import load_scenario
from fedleak.simulation import configure_logging, simulate

ROOT = Path(__file__).resolve().parents[1]


def defenses_of(scenario) -> list:
    """The training default first, then every distinct client override, in client order."""
    found = [scenario.training.defense]
    for override in sorted(scenario.clients.overrides, key=lambda o: o.client):
        if override.defense is not None and override.defense not in found:
            found.append(override.defense)
    return found


def accuracy_runs(defenses: list, ray_dir: Path) -> dict[str, dict]:
    base = load_scenario(ROOT / "scenarios" / "defense_cost.yaml")
    results = {}
    for defense in defenses:
        scenario = base.model_copy(update={"training": base.training.model_copy(update={"defense": defense})})
        with tempfile.TemporaryDirectory() as run_dir:
            result = simulate(scenario, run_dir=Path(run_dir), attacks=False, report=False, progress=False,
                              ray_temp_dir=ray_dir)
            with (Path(run_dir) / "rounds.csv").open(newline="") as handle:
                rounds = list(csv.DictReader(handle))
        accuracy = [float(r["accuracy"]) for r in rounds]
        label = defense_label(defense)
        results[label] = {"final_accuracy": accuracy[-1], "best_accuracy": max(accuracy),
                          "accuracy_per_round": accuracy, "ok": result.ok}
        print(f"[accuracy] {label:60s} final {accuracy[-1]:.3f}  best {max(accuracy):.3f}", flush=True)
    return results


def leakage_run(ray_dir: Path) -> dict[str, dict[str, float]]:
    scenario = load_scenario(ROOT / "scenarios" / "defenses.yaml")
    with tempfile.TemporaryDirectory() as run_dir:
        simulate(scenario, run_dir=Path(run_dir), report=False, progress=False, ray_temp_dir=ray_dir)
        with (Path(run_dir) / "leakage.csv").open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    psnrs: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row["status"] == "ok":
            psnrs[row["defense"]][row["attack"]].append(float(row["psnr"]))
    return {d: {a: statistics.median(v) for a, v in by_attack.items()} for d, by_attack in psnrs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-leakage", action="store_true", help="only the accuracy runs")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    configure_logging(verbose=False)
    defenses = defenses_of(load_scenario(ROOT / "scenarios" / "defenses.yaml"))
    with tempfile.TemporaryDirectory(prefix="ray-") as ray_dir:
        accuracy = accuracy_runs(defenses, Path(ray_dir))
        leakage = {} if args.skip_leakage else leakage_run(Path(ray_dir))
    attacks = sorted({a for by_attack in leakage.values() for a in by_attack})
    print()
    print(f"{'defense':60s} {'final acc':>9s} {'best acc':>8s} " + " ".join(f"{a + ' dB':>10s}" for a in attacks))
    for label, acc in accuracy.items():
        cells = " ".join(f"{leakage.get(label, {}).get(a, float('nan')):>10.1f}" for a in attacks)
        print(f"{label:60s} {acc['final_accuracy']:>9.3f} {acc['best_accuracy']:>8.3f} {cells}")
    write_json(args.out, {"accuracy": accuracy, "leakage_median_psnr": leakage})


if __name__ == "__main__":
    main()
