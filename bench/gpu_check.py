"""The GPU path, checked in a few minutes on a machine with CUDA.

1. The registry's CUDA test cases (``pytest -m gpu``): every model on the GPU.
2. Seconds per attack, CPU against GPU, side by side in this process: iDLG and R-CONV on the same victim updates.
3. ``scenarios/smoke.yaml`` with ``device: cuda``: attacker actors on fractional GPUs (``executor.gpus_per_attack``)
   beside Flower's CPU clients; the run must finish with every attack scored.

Without CUDA it says so and exits 2 (nothing to check). Usage: ``python bench/gpu_check.py [--attacks 3]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def seconds_per_attack(name: str, device: str, count: int, params: dict) -> float:
    from fedleak.attacks import get_attack
    from fedleak.observe import observe
    from fedleak.training import batch_gradient
    from fedleak.types import ModelSpec, ThreatModel

    spec = ModelSpec("lenet", 3, 32, 10)
    times = []
    for index in range(count):
        torch.manual_seed(index)
        model = spec.build()
        image, label = torch.rand(1, 3, 32, 32), torch.tensor([index % 10])
        observation = observe(spec, model.state_dict(), batch_gradient(model, image, label), "gradient",
                              ThreatModel(), metadata={"round": 1, "client": index, "batch_size": 1})
        attack = get_attack(name, device=device, seed=index, **params)
        start = time.perf_counter()
        attack(observation)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attacks", type=int, default=3, help="victims per attack and device")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here: nothing to check", file=sys.stderr)
        return 2
    print(f"device: {torch.cuda.get_device_name(0)}")
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests"], cwd=ROOT)
    import fedleak.attacks  # noqa: F401 — registers the attacks

    for name, params in (("idlg", {"iterations": 100}), ("rconv", {})):
        cpu = seconds_per_attack(name, "cpu", args.attacks, params)
        gpu = seconds_per_attack(name, "cuda", args.attacks, params)
        print(f"{name}: {cpu:.2f} s per attack on CPU, {gpu:.2f} s on GPU → {cpu / gpu:.1f}×")
    from fedleak.drivers.scenarios import load_scenario
    from fedleak.drivers.simulation import simulate

    scenario = load_scenario(ROOT / "scenarios" / "smoke.yaml").model_copy(update={"device": "cuda"})
    with tempfile.TemporaryDirectory() as folder:
        result = simulate(scenario, run_dir=Path(folder) / "run", base_dir=ROOT / "scenarios", executor="ray",
                          progress=False)
    print(f"smoke on fractional GPUs: ok={result.ok}, {result.attacks_finished} attacks "
          f"({result.attacks_failed} failed), {result.seconds:.0f} s; problems: {result.problems}")
    return 0 if tests.returncode == 0 and result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
