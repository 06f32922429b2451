"""Quality of the gradient-matching attacks (DLG, iDLG, Inverting Gradients, linear closed form) on real images.

    python bench/quality_gm.py all --out runs/bench-gm.json     # everything (about an hour on 2 busy cores)
    python bench/quality_gm.py idlg --count 5                   # one part, fewer images
    python bench/quality_gm.py compare --set lfw64 --count 10   # idlg and dlg side by side, image by image
    python bench/quality_gm.py ig --set cifar10-heldout --count 5 --param setting=full --param iterations=4000

Parts (PSNR with peak 1 on [0, 1] images; one freshly initialised DLG LeNet per image, seed = image index):
- ``labels``: iDLG row-sum and bias-sign label accuracy at B = 1 on ``lenet`` (sigmoid) for MNIST, CIFAR-100 and LFW.
- ``idlg``: ``idlg`` with its defaults (300 L-BFGS iterations at most) on N images of ``--set``: how many reach
  30 dB, and how many attempts diverged or stalled and were redrawn.
- ``dlg``: the same for ``dlg`` (soft labels learned): median PSNR and label accuracy.
- ``ig``: ``inverting_gradients`` (CPU default setting unless ``--param``) on N images of ``--set``.
- ``compare``: ``idlg`` and ``dlg`` on the same images, one after the other per image.
- ``linear``: the closed form on ``linreg`` for one image (B = 1) and the mixture it returns for B = 4.
- ``local_steps``: ``idlg`` on K = 1, 2, 5 local SGD steps (lr 0.1, B = 1), simulating the steps versus treating the
  pseudo-gradient as a gradient.

Images: the named sets of ``image_sets.py`` (``--set``, default the held-out CIFAR-10 images 100–199; the settings
were tuned on ``cifar10-tuning``, images 0–19). ``labels`` uses the bundled MNIST/CIFAR-100/LFW test images,
``linear`` and ``local_steps`` the bundled CIFAR-10 ones.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from bench_io import write_json
from image_sets import SETS

from fedleak.attacks import get_attack
from fedleak.attacks.labels import bias_sign_label, idlg_label, last_linear_gradients
from fedleak.config.schema import DataConfig
from fedleak.data import load_images
from fedleak.metrics import psnr
from fedleak.observe import observe
from fedleak.training import batch_gradient, local_steps_update
from fedleak.types import ModelSpec, Observation, ThreatModel

SUCCESS_DB = 30.0


def cifar10(count: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The first ``count`` bundled CIFAR-10 test images in [0, 1] and their labels (parts that tune nothing)."""
    image_set = load_images(DataConfig(dataset="cifar10", split="test"))
    count = min(count, len(image_set))
    images, labels = image_set.get(list(range(count)))
    return images, labels, image_set.source


def observation(model_name: str, images: torch.Tensor, labels: torch.Tensor, num_classes: int, seed: int,
                steps: int = 0, lr: float = 0.1) -> Observation:
    spec = ModelSpec(model_name, images.shape[1], images.shape[-1], num_classes)
    torch.manual_seed(seed)
    model = spec.build()
    metadata: dict[str, Any] = {"batch_size": images.shape[0]}
    if steps:
        update, kind = local_steps_update(model, images, labels, steps, lr), "local_steps"
        metadata |= {"lr": lr, "local_steps": steps}
    else:
        update, kind = batch_gradient(model, images, labels), "gradient"
    return observe(spec, model.state_dict(), update, kind, ThreatModel(), metadata)


def run_labels(count: int) -> dict[str, Any]:
    out = {}
    for dataset in ("mnist", "cifar100", "lfw"):
        image_set = load_images(DataConfig(dataset=dataset, split="test"))
        n = min(count, len(image_set))
        hits = {"idlg": 0, "bias_sign": 0}
        for index in range(n):
            image, label = image_set.get([index])
            obs = observation("lenet", image, label, image_set.num_classes, seed=index)
            weight_grad, bias_grad = last_linear_gradients(obs.gradient(), image_set.num_classes)
            hits["idlg"] += idlg_label(weight_grad) == int(label)
            hits["bias_sign"] += bias_sign_label(bias_grad) == int(label)
        out[dataset] = {"images": n, **{k: v / n for k, v in hits.items()}, "source": image_set.source}
        print(f"labels {dataset:9s} n={n:3d}  iDLG {hits['idlg']}/{n}  bias sign {hits['bias_sign']}/{n}", flush=True)
    return out


def attack_one(name: str, image: torch.Tensor, label: torch.Tensor, num_classes: int, seed: int,
               params: dict[str, Any], model: str = "lenet") -> dict[str, Any]:
    """One attack on one image (a freshly seeded network, seed = dataset index): its row."""
    obs = observation(model, image, label, num_classes, seed=seed)
    result = get_attack(name, seed=seed, **params)(obs)
    value = float(psnr(result.images, image)) if result.images is not None else None
    diag = result.diagnostics
    return {
        "image": seed, "attack": name, "status": result.status, "reason": result.reason, "psnr": value,
        "label_ok": result.labels is not None and result.labels.tolist() == label.tolist(),
        "seconds": round(result.seconds, 2), "attempts": diag.get("attempts"),
        "diverged": diag.get("diverged_attempts"), "stalled": diag.get("stalled_attempts"),
        "evaluations": diag.get("evaluations"), "stops": diag.get("stop_reasons"),
        "matching_loss": diag.get("matching_loss"), "conv_kernels": diag.get("conv_kernels"),
    }


def print_row(row: dict[str, Any]) -> None:
    shown = "failed" if row["psnr"] is None else f"{row['psnr']:6.2f} dB"
    print(f"{row['attack']} image {row['image']:3d}: {shown}  label {'ok' if row['label_ok'] else 'WRONG'}  "
          f"{row['seconds']:6.1f}s  attempts {row['attempts']} {row['stops']}", flush=True)


def summarise(name: str, rows: list[dict[str, Any]], params: dict[str, Any], source: str) -> dict[str, Any]:
    values = [r["psnr"] if r["psnr"] is not None else 0.0 for r in rows]
    summary = {
        "attack": name, "params": params, "images": len(rows), "source": source,
        "success": sum(v >= SUCCESS_DB for v in values), "median_psnr": statistics.median(values),
        "min_psnr": min(values), "label_accuracy": sum(r["label_ok"] for r in rows) / len(rows),
        "redrawn_attempts": sum((r["diverged"] or 0) + (r["stalled"] or 0) for r in rows),
        "median_seconds": statistics.median(r["seconds"] for r in rows),
        "total_seconds": round(sum(r["seconds"] for r in rows), 1), "rows": rows,
    }
    print(f"{name}: {summary['success']}/{len(rows)} at >= {SUCCESS_DB} dB, median {summary['median_psnr']:.2f} dB, "
          f"min {summary['min_psnr']:.2f} dB, labels {summary['label_accuracy']:.0%}, redrawn attempts "
          f"{summary['redrawn_attempts']}, {summary['total_seconds']} s in all  [{source}]", flush=True)
    return summary


def run_on_set(names: list[str], set_name: str, count: int | None, offset: int,
               params: dict[str, Any]) -> dict[str, Any]:
    """Each attack of ``names`` on the same images of a named set, interleaved image by image."""
    images, labels, indices, num_classes = SETS[set_name].load(count, offset)
    source = SETS[set_name].describe(indices)
    print(source, flush=True)
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for i, index in enumerate(indices):
        for name in names:
            row = attack_one(name, images[i:i + 1], labels[i:i + 1], num_classes, index, params)
            rows[name].append(row)
            print_row(row)
    return {name: summarise(name, rows[name], params, source) for name in names}


def run_linear() -> dict[str, Any]:
    image_set = load_images(DataConfig(dataset="cifar10", split="test"))
    out = {}
    for batch in (1, 4):
        images, labels = image_set.get(list(range(batch)))
        result = get_attack("linear")(observation("linreg", images, labels, 10, seed=0))
        # Best counterpart per true image: a mixture has no fixed order.
        best = [float(psnr(result.images, image.expand_as(result.images)).max()) for image in images]
        out[f"B={batch}"] = {"psnr_best_match": best, "mixture": result.diagnostics["mixture"]}
        rounded = [round(b, 2) for b in best]
        print(f"linear B={batch}: best-match PSNR {rounded} mixture={result.diagnostics['mixture']}", flush=True)
    return out


def run_local_steps(count: int) -> dict[str, Any]:
    images, labels, _ = cifar10(count)
    out: dict[str, Any] = {}
    for steps in (1, 2, 5):
        for mode in ("simulate", "pseudo_gradient"):
            values = []
            for index in range(images.shape[0]):
                obs = observation("lenet", images[index:index + 1], labels[index:index + 1], 10, index, steps=steps)
                result = get_attack("idlg", seed=index, local_steps_mode=mode)(obs)
                values.append(float(psnr(result.images, images[index:index + 1])) if result.images is not None else 0)
            out[f"K={steps} {mode}"] = values
            print(f"local steps K={steps} {mode:15s}: PSNR {[round(v, 1) for v in values]}", flush=True)
    return out


def parse_params(items: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        key, _, text = item.partition("=")
        for kind in (int, float):
            try:
                params[key] = kind(text)
                break
            except ValueError:
                continue
        else:
            params[key] = {"true": True, "false": False}.get(text.lower(), text)
    return params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["all", "labels", "idlg", "dlg", "ig", "compare", "linear", "local_steps"])
    parser.add_argument("--set", default="cifar10-heldout", choices=sorted(SETS), help="images (image_sets.py)")
    parser.add_argument("--count", type=int, default=20, help="images of --set for idlg/dlg/ig/compare")
    parser.add_argument("--offset", type=int, default=0, help="skip this many images of --set")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="attack config field")
    parser.add_argument("--label-count", type=int, default=100, help="images per dataset for labels")
    parser.add_argument("--steps-count", type=int, default=3, help="images for local_steps")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    start = time.perf_counter()
    params = parse_params(args.param)
    results: dict[str, Any] = {"torch": torch.__version__, "threads": torch.get_num_threads(), "set": args.set}
    parts = ["labels", "linear", "idlg", "dlg", "ig", "local_steps"] if args.part == "all" else [args.part]
    attacks = {"idlg": ["idlg"], "dlg": ["dlg"], "ig": ["inverting_gradients"], "compare": ["idlg", "dlg"]}
    for part in parts:
        if part == "labels":
            results["labels"] = run_labels(args.label_count)
        elif part == "linear":
            results["linear"] = run_linear()
        elif part in attacks:
            results |= run_on_set(attacks[part], args.set, args.count, args.offset, params)
        elif part == "local_steps":
            results["local_steps"] = run_local_steps(args.steps_count)
    results["seconds"] = round(time.perf_counter() - start, 1)
    write_json(args.out, results)


if __name__ == "__main__":
    main()
