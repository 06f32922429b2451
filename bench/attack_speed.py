"""Speed of fedleak's ``dlg`` and ``idlg`` against a plain reference DLG loop, side by side in one process.

    python bench/attack_speed.py                      # held-out CIFAR-10 test images 100-104 on DLG's LeNet
    python bench/attack_speed.py --images 101 102 --out runs/bench-speed.json
    python bench/attack_speed.py --set cifar10-tuning --images 0 1 2 3 4    # the images the settings were tuned on

Images come from ``image_sets.py`` (``--set``, default the held-out CIFAR-10 images; ``--images`` are dataset
indices within the set, default its first five).

The baseline is the loop of the DLG paper (Zhu et al. 2019, arXiv 1906.08935), written here from its description:
random normal dummy image and dummy label logits, L-BFGS with torch's defaults (lr 1, 20 inner iterations,
history 100), squared L2 distance between gradients, 300 iterations, no restarts, no early stop. By default it runs
with one thread, as fedleak's loop does, so the comparison is algorithmic; ``--baseline-threads 0 1`` adds a run with
torch's default thread count (what a user of the plain loop gets; on a busy 2-core machine it was 56× slower).
The baseline runs on torch's default CPU convolution kernels (oneDNN); ``--baseline-kernels onednn native`` adds a
run on the native kernels that fedleak's loop picks for this model, to separate that gain from the algorithm's.

Per image and method: time until the image first reaches 30 dB PSNR (peak 1), final PSNR, total time and number of
gradient evaluations. The baseline's time to 30 dB is measured by scoring after every iteration (an oracle stop no
real attacker has); fedleak's attacks stop by themselves, and their *total* time is reported as their time to
30 dB when they end at or above 30 dB (an upper bound). Ratios are fedleak time / baseline time to 30 dB.
Timings on a shared machine are noisy: the evaluation counts do not depend on load.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from bench_io import write_json
from image_sets import SETS

from fedleak.attacks import get_attack
from fedleak.attacks.cpu_kernels import conv_kernels
from fedleak.metrics import psnr
from fedleak.observe import observe
from fedleak.training import batch_gradient
from fedleak.types import ModelSpec, ThreatModel

SUCCESS_DB = 30.0


def reference_dlg(model: torch.nn.Module, target: list[torch.Tensor], truth: torch.Tensor, num_classes: int,
                  seed: int, iterations: int = 300) -> dict[str, Any]:
    """The plain DLG loop; scores every iteration against ``truth`` only to time the first success."""
    torch.manual_seed(seed)
    dummy = torch.randn(truth.shape).requires_grad_(True)
    label_logits = torch.randn(truth.shape[0], num_classes).requires_grad_(True)
    optimizer = torch.optim.LBFGS([dummy, label_logits])
    evaluations = 0

    def closure() -> torch.Tensor:
        nonlocal evaluations
        evaluations += 1
        optimizer.zero_grad()
        soft = F.softmax(label_logits, dim=-1)
        loss = -(soft * F.log_softmax(model(dummy), dim=-1)).sum(-1).mean()
        grads = torch.autograd.grad(loss, list(model.parameters()), create_graph=True)
        distance = sum(((g - t) ** 2).sum() for g, t in zip(grads, target, strict=True))
        distance.backward()
        return distance

    # trace: (seconds, PSNR) after every iteration; the scoring itself is kept off the clock.
    elapsed, first_success, evals_at_success, trace = 0.0, None, None, []
    for _ in range(iterations):
        tick = time.perf_counter()
        optimizer.step(closure)
        elapsed += time.perf_counter() - tick
        trace.append((elapsed, float(psnr(dummy.detach().clamp(0, 1), truth))))
        if first_success is None and trace[-1][1] >= SUCCESS_DB:
            first_success, evals_at_success = elapsed, evaluations
    return {"seconds_to_30db": first_success, "evaluations_to_30db": evals_at_success, "final_psnr": trace[-1][1],
            "seconds": elapsed, "evaluations": evaluations, "trace": trace}


def psnr_at(trace: list[tuple[float, float]], seconds: float) -> float:
    """The baseline's PSNR after its last iteration finished within ``seconds`` (its start if none did)."""
    done = [p for t, p in trace if t <= seconds]
    return done[-1] if done else float("nan")


def fedleak_attack(name: str, spec: ModelSpec, model: torch.nn.Module, truth: torch.Tensor, labels: torch.Tensor,
                   seed: int) -> dict[str, Any]:
    obs = observe(spec, model.state_dict(), batch_gradient(model, truth, labels), "gradient", ThreatModel(),
                  {"batch_size": truth.shape[0]})
    result = get_attack(name, seed=seed)(obs)
    final = float(psnr(result.images, truth)) if result.images is not None else -math.inf
    return {"seconds_to_30db": result.seconds if final >= SUCCESS_DB else None, "final_psnr": final,
            "seconds": result.seconds, "evaluations": result.diagnostics.get("evaluations"),
            "attempts": result.diagnostics.get("attempts"), "conv_kernels": result.diagnostics.get("conv_kernels")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", default="cifar10-heldout", choices=sorted(SETS), help="images (image_sets.py)")
    parser.add_argument("--images", type=int, nargs="+", help="dataset indices within --set (default: its first 5)")
    parser.add_argument("--baseline-threads", type=int, nargs="+", default=[1],
                        help="thread counts for the baseline runs; 0 = torch's default (default: 1)")
    parser.add_argument("--baseline-kernels", nargs="+", default=["onednn"], choices=["onednn", "native"],
                        help="CPU convolution kernels for the baseline runs (default: torch's default, onednn)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    bench_set = SETS[args.set]
    args.images = args.images or list(bench_set.indices[:5])
    unknown = sorted(set(args.images) - set(bench_set.indices))
    if unknown:
        parser.error(f"--images {unknown} are not in {bench_set.name} ({bench_set.indices[0]}–{bench_set.indices[-1]})")
    default_threads = torch.get_num_threads()
    baselines = [f"baseline ({n or default_threads} thread{'s' if (n or default_threads) > 1 else ''}, {kernels})"
                 for n in args.baseline_threads for kernels in args.baseline_kernels]
    methods = [*baselines, "fedleak dlg", "fedleak idlg"]
    rows: list[dict[str, Any]] = []
    for index in args.images:
        truth, labels, _, num_classes = bench_set.load(1, bench_set.indices.index(index))
        spec = ModelSpec("lenet", truth.shape[1], truth.shape[-1], num_classes)
        torch.manual_seed(index)
        model = spec.build()
        target = [g.detach() for g in batch_gradient(model, truth, labels).values()]
        for method in methods:
            if method.startswith("baseline"):
                torch.set_num_threads(int(method.split("(")[1].split()[0]))
                with conv_kernels(method.rstrip(")").split()[-1]):
                    row = reference_dlg(model, target, truth, num_classes, seed=index)
                torch.set_num_threads(default_threads)
            else:
                row = fedleak_attack(method.split()[-1], spec, model, truth, labels, seed=index)
                # Equal time: where the first baseline stood when fedleak stopped.
                first = next(r for r in rows if r["image"] == index and r["method"] == baselines[0])
                row["baseline_psnr_same_time"] = psnr_at(first["trace"], row["seconds"])
            rows.append({"image": index, "method": method, **row})
            t30 = row["seconds_to_30db"]
            at_success = f" ({row['evaluations_to_30db']} to 30 dB)" if row.get("evaluations_to_30db") else ""
            same_time = row.get("baseline_psnr_same_time")
            versus = f"  ({baselines[0]} at that time: {same_time:.2f} dB)" if same_time is not None else ""
            print(f"image {index} {method:31s} to 30 dB: {'never' if t30 is None else f'{t30:7.1f}s'}  "
                  f"final {row['final_psnr']:6.2f} dB  total {row['seconds']:7.1f}s  "
                  f"evals {row['evaluations']}{at_success}{versus}", flush=True)
    print()
    print(f"{'method':31s} {'reached 30 dB':>13s} {'median final':>12s} {'sum time to 30 dB*':>18s} "
          f"{'evals*':>10s}")
    # Time sums over the images every method brought to 30 dB, so the comparison covers the same images.
    common = [i for i in args.images if all(r["seconds_to_30db"] is not None for r in rows if r["image"] == i)]
    summary: dict[str, Any] = {"common_images": common}
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        reached = sum(r["seconds_to_30db"] is not None for r in mine)
        t30 = sum(r["seconds_to_30db"] for r in mine if r["image"] in common)
        # The baseline's evaluations up to its first success (oracle stop), fedleak's until it stopped itself.
        evals = sum(r.get("evaluations_to_30db") or r["evaluations"] or 0 for r in mine if r["image"] in common)
        median = statistics.median(r["final_psnr"] for r in mine)
        summary[method] = {"reached": reached, "median_final_psnr": median, "time_to_30db_common": t30,
                           "evaluations_common": evals}
        line = f"{method:31s} {reached:>8d}/{len(mine):<4d} {median:>10.2f}dB {t30:>17.1f}s {evals:>10d}"
        if not method.startswith("baseline"):
            same_time = statistics.median(r["baseline_psnr_same_time"] for r in mine)
            summary[method]["median_baseline_psnr_same_time"] = same_time
            line += f"   ({baselines[0]} at the same times: median {same_time:.2f} dB)"
        print(line)
    print(f"* over the images every method reached 30 dB on: {common}")
    for baseline in baselines:
        for mine in methods[len(baselines):]:
            if summary[baseline]["time_to_30db_common"] > 0:
                ratio = summary[mine]["time_to_30db_common"] / summary[baseline]["time_to_30db_common"]
                summary[f"ratio {mine} / {baseline}"] = ratio
                print(f"{mine} / {baseline}: time ratio {ratio:.2f}")
    write_json(args.out, {"rows": rows, "summary": summary})


if __name__ == "__main__":
    main()
