"""Benchmark of the analytic attack family (R-CONV, R-GAP, hybrid) on real images.

    python bench/analytic.py all --out runs/bench-analytic.json      # everything (tens of minutes on 2 cores)
    python bench/analytic.py rconv --count 100                       # one part

Parts:
- ``rconv``: success rate (PSNR ≥ 40 dB, peak 1) of ``rconv`` on ``rconv-lenet`` over the first N CIFAR-10 test images
  (ReLU and LeakyReLU) and MNIST, one freshly initialised network per image; failures listed with the per-layer
  report that explains them.
- ``timing``: R-CONV seconds per 32×32×3 image, and one layer's gradient system solved by SVD least squares side by
  side with the reference code's greedy row selection (add a row, recompute ``matrix_rank``, keep it if it raised the
  rank, then ``np.linalg.solve``) — timed in the same process, reported as a ratio.
- ``rgap``: ``rgap`` on ``cnn6`` over the first N CIFAR-10 images.
- ``hybrid``: per-image PSNR of ``hybrid`` against ``rgap`` and ``dlg`` on the hybrid paper's small CNNs.
- ``memory``: peak resident memory of ``rgap`` and ``hybrid`` on ``lenet`` at 64×64×3, each in a fresh subprocess.

Images: ``$FEDLEAK_FIXTURES/cifar10_test_first1000.npz`` and ``mnist_test.npz`` when present, else the 20 test images
bundled with foolbox (the count is capped and says so).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedleak.attacks import get_attack
from fedleak.attacks.conv_constraints import gradient_matrix, gradient_rhs
from fedleak.attacks.conv_network import ConvGeometry
from fedleak.attacks.conv_solvers import solve_gradient_constraints
from fedleak.observe import observe
from fedleak.training import batch_gradient
from fedleak.types import ModelSpec, ThreatModel

SUCCESS_DB = 40.0
#: FC bias gradients below this (max over classes) mean a saturated softmax: p_true rounds to 1 in float32.
SATURATED = 1e-6


def load_images(dataset: str, count: int, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``count`` test images from index ``offset`` in [0, 1] (N×C×H×W) with labels, and where they came from."""
    files = {"cifar10": "cifar10_test_first1000.npz", "mnist": "mnist_test.npz"}
    root = os.environ.get("FEDLEAK_FIXTURES")
    path = Path(root) / files[dataset] if root else None
    if path is not None and path.is_file():
        data = np.load(path)
        x, y = data["x"][offset : offset + count], data["y"][offset : offset + count]
        x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
        return torch.from_numpy(x).float() / 255.0, torch.from_numpy(y).long(), str(path)
    from fedleak.data.bundled import load_bundled

    bundled = load_bundled(dataset, "test", None)
    end = min(offset + count, len(bundled.labels))
    return (bundled.images[offset:end].float() / 255.0, bundled.labels[offset:end],
            f"foolbox bundled ({max(end - offset, 0)} images)")


def observation(model_name: str, x: torch.Tensor, y: torch.Tensor, activation: str | None, seed: int):
    torch.manual_seed(seed)
    spec = ModelSpec(model_name, x.shape[1], x.shape[-1], 10, activation)
    model = spec.build()
    update = batch_gradient(model, x, y)
    return observe(spec, model.state_dict(), update, "gradient", ThreatModel(), {"batch_size": len(x)})


def psnr(a: torch.Tensor | None, b: torch.Tensor) -> float:
    if a is None:
        return float("nan")
    mse = float(((a.double() - b.double()) ** 2).mean())
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def why(result) -> str:
    """A one-line reason from the per-layer report."""
    if result.status != "ok":
        return result.reason
    bad = [layer for layer in result.diagnostics.get("layers", []) if layer["deficiency"]]
    if bad:
        return "; ".join(f"{b['layer']} deficient by {b['deficiency']} ({b['method']})" for b in bad)
    worst = max(result.diagnostics.get("layers", []), key=lambda layer: layer["residual"], default=None)
    return f"all layers unique; largest residual {worst['residual']:.1e} at {worst['layer']}" if worst else ""


def _fc_name(obs) -> str:
    return [k for k in obs.update if k.endswith(".bias")][-1].removesuffix(".bias")


def run_success(
    attack: str, model: str, dataset: str, activation: str | None, count: int, offset: int = 0, **params
) -> dict:
    x, y, source = load_images(dataset, count, offset)
    rows, seconds = [], []
    for k in range(len(y)):
        # The network seed is the image index, so an image gets the same network whatever the offset.
        i = offset + k
        obs = observation(model, x[k : k + 1], y[k : k + 1], activation, seed=i)
        result = get_attack(attack, **params)(obs)
        value = psnr(result.images, x[k : k + 1])
        seconds.append(result.seconds)
        signal = float(obs.gradient()[f"{_fc_name(obs)}.bias"].abs().max())
        rows.append({"index": i, "psnr": value, "ok": bool(value >= SUCCESS_DB), "why": "" if value >= SUCCESS_DB
                     else why(result), "fc_bias_grad_max": signal})
        print(f"{attack} {model} {dataset} {activation} #{i}: {value:.1f} dB {result.seconds:.2f} s", file=sys.stderr,
              flush=True)
    finite = [r["psnr"] for r in rows if np.isfinite(r["psnr"])]
    # A saturated softmax (|logits| in the hundreds with uniform(-0.5, 0.5) weights and unbounded activations) leaves
    # a float32 update with (nearly) no signal: count those failures separately.
    saturated = [r for r in rows if not r["ok"] and r["fc_bias_grad_max"] < SATURATED]
    return {
        "failures_saturated_softmax": len(saturated),
        "attack": attack, "model": model, "dataset": dataset, "activation": activation or "default", "source": source,
        "offset": offset, "images": len(rows), "success": sum(r["ok"] for r in rows),
        "median_psnr": float(np.median(finite)) if finite else None,
        "min_psnr": float(np.min(finite)) if finite else None,
        "median_seconds": float(np.median(seconds)), "failures": [r for r in rows if not r["ok"]],
    }


def part_rconv(count: int, offset: int = 0) -> list[dict]:
    return [
        run_success("rconv", "rconv-lenet", "cifar10", "relu", count, offset),
        run_success("rconv", "rconv-lenet", "cifar10", "leaky_relu", count, offset),
        run_success("rconv", "rconv-lenet", "mnist", "relu", count, offset),
        run_success("rconv", "lenet", "mnist", None, count, offset),
    ]


def part_rgap(count: int) -> list[dict]:
    return [run_success("rgap", "cnn6", "cifar10", None, count)]


def greedy_rank_selection(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """The reference code's procedure, re-implemented for timing: grow a row set one row at a time, keep a row only
    if ``matrix_rank`` increases, stop at full rank, then solve the square system."""
    n = A.shape[1]
    kept: list[int] = []
    rank = 0
    for row in range(A.shape[0]):
        if rank == n:
            break
        candidate = np.linalg.matrix_rank(A[kept + [row]])
        if candidate > rank:
            kept.append(row)
            rank = candidate
    if rank < n:
        raise ValueError("greedy selection found no full-rank square system")
    return np.linalg.solve(A[kept], B[kept])


def part_timing(repeats: int) -> dict:
    x, y, source = load_images("cifar10", repeats)
    seconds = []
    for i in range(len(y)):
        obs = observation("rconv-lenet", x[i : i + 1], y[i : i + 1], "relu", seed=i)
        get_attack("rconv")(obs)  # warm-up of lazy imports on the first image only matters once
        seconds.append(get_attack("rconv")(obs).seconds)
    # One layer's system side by side: rconv-lenet layer 2 (16 filters, 12 channels of 16×16 pixels).
    torch.manual_seed(0)
    model = ModelSpec("rconv-lenet", 3, 32, 10, "relu").build().double()
    conv = model.body[2]
    h = model.body[1](model.body[0](x[:1].double()))
    h.requires_grad_(True)
    z = conv(h)
    out = model.fc(model.body[3:](z).flatten(1))
    z.retain_grad()
    torch.nn.functional.cross_entropy(out, y[:1]).backward()
    geom = ConvGeometry.from_module(conv, 16, 16)
    A = gradient_matrix(z.grad[0].numpy(), geom)
    B = gradient_rhs(conv.weight.grad.numpy(), geom)
    start = time.perf_counter()
    ours = solve_gradient_constraints(A, B)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    greedy = greedy_rank_selection(A.toarray(), B)
    t_greedy = time.perf_counter() - start
    truth = h.detach()[0].numpy().reshape(geom.in_channels, -1).T
    return {
        "source": source, "rconv_seconds_per_image_median": float(np.median(seconds)),
        "rconv_seconds_per_image": seconds,
        "layer": f"rconv-lenet layer 2: A is {A.shape[0]}×{A.shape[1]}, {geom.in_channels} right-hand sides",
        "svd_lstsq_seconds": t_ours, "greedy_matrix_rank_seconds": t_greedy, "speedup": t_greedy / t_ours,
        "svd_lstsq_max_error": float(np.abs(ours.x - truth).max()),
        "greedy_max_error": float(np.abs(greedy - truth).max()),
    }


def part_hybrid(count: int, dlg_iterations: int) -> list[dict]:
    x, y, source = load_images("cifar10", count)
    has_dlg = "dlg" in __import__("fedleak.attacks", fromlist=["list_attacks"]).list_attacks()
    rows = []
    for model in ("hybrid-cnn-a", "hybrid-cnn-b"):
        for i in range(len(y)):
            obs = observation(model, x[i : i + 1], y[i : i + 1], None, seed=i)
            row: dict[str, Any] = {"model": model, "index": i}
            attacks = {"rgap": {}, "hybrid": {}}
            if has_dlg:
                attacks["dlg"] = {"iterations": dlg_iterations}
            for name, params in attacks.items():
                result = get_attack(name, **params)(obs)
                row[name] = psnr(result.images, x[i : i + 1])
                row[f"{name}_seconds"] = result.seconds
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    return [{"source": source, "dlg_available": has_dlg, "rows": rows}]


def memory_child(attack: str) -> None:
    """Run one attack on lenet 64×64×3 and print memory figures as JSON.

    The process's peak resident set (VmHWM) is reset just before the attack (Linux ``/proc/self/clear_refs``), so the
    peak covers the attack alone on top of what the imports and data already hold; tracemalloc adds the peak of
    Python/numpy allocations (torch's are not traced).
    """
    import tracemalloc

    x, y, _ = load_images("cifar10", 1)
    x = torch.nn.functional.interpolate(x, size=64, mode="bilinear", align_corners=False).clamp(0, 1)
    obs = observation("lenet", x, y, None, seed=0)
    params = {"image_iterations": 50} if attack == "hybrid" else {}
    attack_obj = get_attack(attack, **params)
    attack_obj(observation("lenet", x[:, :, :16, :16], y, None, seed=0))  # warm lazy imports outside the peak
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_mib("VmRSS")
    tracemalloc.start()
    result = attack_obj(obs)
    _, traced_peak = tracemalloc.get_traced_memory()
    print(json.dumps({
        "attack": attack, "status": result.status, "reason": result.reason, "psnr": psnr(result.images, x),
        "seconds": result.seconds, "rss_before_mib": before, "rss_peak_during_attack_mib": _status_mib("VmHWM"),
        "python_numpy_traced_peak_mib": traced_peak / 2**20,
        "layers": [(r["layer"], r["method"], r["deficiency"]) for r in result.diagnostics.get("layers", [])],
    }))


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def part_memory() -> list[dict]:
    out = []
    for attack in ("rgap", "hybrid"):
        proc = subprocess.run([sys.executable, __file__, "memory-child", "--attack", attack],
                              capture_output=True, text=True, check=True)
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["all", "rconv", "timing", "rgap", "hybrid", "memory", "memory-child"])
    parser.add_argument("--count", type=int, default=100, help="images for the rconv part")
    parser.add_argument("--offset", type=int, default=0,
                        help="first test image of the rconv part (e.g. 100 for images the defaults were not tuned on)")
    parser.add_argument("--rgap-count", type=int, default=20)
    parser.add_argument("--hybrid-count", type=int, default=5)
    parser.add_argument("--dlg-iterations", type=int, default=300)
    parser.add_argument("--timing-images", type=int, default=5)
    parser.add_argument("--attack", default="rgap")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.part == "memory-child":
        memory_child(args.attack)
        return
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    results: dict[str, Any] = {}
    if args.part in ("all", "timing"):
        results["timing"] = part_timing(args.timing_images)
    if args.part in ("all", "rconv"):
        results["rconv"] = part_rconv(args.count, args.offset)
    if args.part in ("all", "rgap"):
        results["rgap"] = part_rgap(args.rgap_count)
    if args.part in ("all", "memory"):
        results["memory"] = part_memory()
    if args.part in ("all", "hybrid"):
        results["hybrid"] = part_hybrid(args.hybrid_count, args.dlg_iterations)
    text = json.dumps(results, indent=1, default=float)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
