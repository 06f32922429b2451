"""Cocktail Party Attack (``cpa``) on large batches and secure-aggregation aggregates, next to ``linear``.

Setting: the ``mlp`` model (flatten → 256 ReLU units → 10 classes) at its seeded PyTorch initialisation (seed = batch
number), one FedSGD gradient per batch from the one client update (float32, as a client sends it); the attacker is
granted the batch size (the aggregate's: the sum of the clients'), nothing else. Every batch is attacked by ``cpa``
(defaults) and by ``linear`` (the closed form on the same first layer, which returns B flagged mixtures) on the same
update. Scores: PSNR after one-to-one matching, share ≥ 20 dB, share re-identified (the reconstruction's nearest
image by SSIM among all images of the data source — CIFAR-10: the 1000 images of the fixture, MNIST: the 5000
bundled training images — is the true one, ``fedleak.metrics.reidentified``), seconds per update (one torch
thread) and the process's peak resident memory after the row (``resource.getrusage``, monotone over the run).
Secure aggregation: the example-weighted mean of C clients' gradients on 16 images each is the one update attacked.
FedAvg (CIFAR-10): one client's new weights after 5 SGD steps on its 64 images, or after 2 epochs over them in
minibatches of 16 (lr 0.1), attacked through the pseudo-gradient ``(w_old − w_new)/(lr·steps)`` (lr and steps
granted).

Images: CPA's settings (the finite-difference filter, the FastICA contrast, bias-gradient intensities) were chosen
on CIFAR-10 test images 0–127 and MNIST training images 0–127 (``--part tune`` reruns those comparisons). The
figures come from held-out images no setting was tuned on: CIFAR-10 test images 128–327 of
``$FEDLEAK_FIXTURES/cifar10_test_first1000.npz`` and MNIST training images 1000–1199, split into disjoint batches.

    FEDLEAK_FIXTURES=../shared/data python bench/cpa.py --out runs/bench-cpa.json
    python bench/cpa.py --part tune
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
from pathlib import Path

import numpy as np
import torch
from bench_io import write_json

from fedleak.attacks import get_attack
from fedleak.clients.update import LocalTraining, client_update, round_batches, total_steps
from fedleak.config.schema import DataConfig
from fedleak.data import load_images
from fedleak.defenses import NoDefense, noise_generator
from fedleak.metrics import score_batch
from fedleak.metrics.reference import ReferenceSet
from fedleak.observe import observe
from fedleak.types import ModelSpec, Observation, ThreatModel

CIFAR_FILE = "cifar10_test_first1000.npz"
#: (first, last + 1) of the images each role uses, per dataset.
TUNING = {"cifar10": (0, 128), "mnist": (0, 128)}
HELD_OUT = {"cifar10": (128, 328), "mnist": (1000, 1200)}
BATCH_SIZES = (8, 32, 64, 128)
#: Secure aggregation: (clients, images per client) whose gradients are averaged into one update.
AGGREGATES = ((4, 16), (8, 16))
#: FedAvg replies of one client with 64 images, attacked through the pseudo-gradient (w_old − w_new)/(lr·steps).
FEDAVG = (("FedAvg: 5 steps on B = 64", LocalTraining("local_steps", 64, 5, 1, 0.1)),
          ("FedAvg: 2 epochs of 64 in B = 16", LocalTraining("epochs", 16, 1, 2, 0.1)))


def load(dataset: str):
    """The data source: CIFAR-10's fixture (1000 test images) or MNIST's 5000 bundled training images."""
    if dataset == "mnist":
        return load_images(DataConfig(dataset="mnist"))
    path = Path(os.environ.get("FEDLEAK_FIXTURES", "")) / CIFAR_FILE
    if not path.is_file():
        raise SystemExit(f"{path} not found; set FEDLEAK_FIXTURES to the folder holding {CIFAR_FILE}")
    return load_images(DataConfig(dataset="cifar10", source="npz", path=str(path)))


def gradient(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, seed: int) -> dict:
    """One client's FedSGD gradient, from the one client update every part of fedleak uses."""
    plan = LocalTraining("gradient", len(images), 1, 1, 0.1)
    update, _ = client_update(model, [(images, labels)], plan, NoDefense(), noise_generator(seed, 0, 1), len(images))
    return update


def observation(image_set, groups: list[list[int]], seed: int, plan: LocalTraining | None = None) -> Observation:
    """The server's view of one round: one client's gradient, the example-weighted mean of several clients'
    gradients (SecAgg), or one client's FedAvg weights after ``plan`` (local steps or epochs over its images)."""
    first = image_set.get(groups[0])[0]
    spec = ModelSpec("mlp", first.shape[1], first.shape[-1], image_set.num_classes)
    torch.manual_seed(seed)
    model = spec.build()
    if plan is not None:
        return fedavg_observation(image_set, groups[0], spec, model, plan, seed)
    grads = [gradient(model, *image_set.get(g), seed) for g in groups]
    sizes = [len(g) for g in groups]
    mean = {k: (sum(n * g[k].double() for n, g in zip(sizes, grads, strict=True)) / sum(sizes)).float()
            for k in grads[0]}
    meta = {"round": 1, "client": 0 if len(groups) == 1 else -1, "batch_size": sum(sizes)}
    return observe(spec, model.state_dict(), mean, "gradient", ThreatModel(), meta)


def fedavg_observation(image_set, shard: list[int], spec: ModelSpec, model: torch.nn.Module, plan: LocalTraining,
                       seed: int) -> Observation:
    """One client's FedAvg reply (new weights) on its shard, with lr and step count granted to the server."""
    positions = round_batches(np.asarray(shard), plan, seed, 0, 1)
    batches = [image_set.get(p) for p in positions]
    update, _ = client_update(model, batches, plan, NoDefense(), noise_generator(seed, 0, 1), len(shard))
    meta = {"round": 1, "client": 0, "batch_size": plan.batch_size, "lr": plan.lr,
            "local_steps": total_steps(plan, positions)}
    if plan.kind == "epochs":
        meta |= {"local_epochs": plan.local_epochs, "num_examples": len(shard)}
    return observe(spec, model.state_dict(), update, plan.kind, ThreatModel(), meta)


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_row(image_set, reference, batches: list[list[list[int]]], attacks: dict[str, dict],
            plan: LocalTraining | None = None) -> dict:
    """Attack every batch (a list of client groups) with every attack; pooled per-image figures per attack."""
    pooled = {name: {"psnr": [], "reid": [], "seconds": [], "diagnostics": []} for name in attacks}
    for number, groups in enumerate(batches):
        obs = observation(image_set, groups, seed=number, plan=plan)
        true, labels = image_set.get([i for g in groups for i in g])
        for name, params in attacks.items():
            result = get_attack(name.split(":")[0], **params)(obs)
            score = score_batch(result.images, None, true, labels, reference=reference)
            pooled[name]["psnr"] += [s.psnr if s.psnr is not None else 0.0 for s in score.per_image]
            pooled[name]["reid"] += [bool(s.reidentified) for s in score.per_image]
            pooled[name]["seconds"].append(result.seconds)
            pooled[name]["diagnostics"].append({k: v for k, v in result.diagnostics.items() if k != "rows_used"})
    return {name: summarise(p) for name, p in pooled.items()} | {"peak_mib": peak_mib()}


def summarise(pooled: dict) -> dict:
    psnr = np.array(pooled["psnr"])
    return {"images": len(psnr), "updates": len(pooled["seconds"]), "reidentified": float(np.mean(pooled["reid"])),
            "psnr>=20": float(np.mean(psnr >= 20)), "median_psnr": float(np.median(psnr)),
            "seconds": statistics.median(pooled["seconds"]), "diagnostics": pooled["diagnostics"]}


def disjoint(span: tuple[int, int], size: int, clients: int = 1) -> list[list[list[int]]]:
    """Disjoint batches of ``clients`` groups of ``size`` consecutive images each, from the span."""
    indices = list(range(*span))
    per_batch = size * clients
    return [[indices[b + c * size: b + (c + 1) * size] for c in range(clients)]
            for b in range(0, len(indices) - per_batch + 1, per_batch)]


def measure(datasets: list[str], spans: dict, attacks: dict[str, dict], aggregates: bool) -> list[dict]:
    rows = []
    for dataset in datasets:
        image_set = load(dataset)
        reference = ReferenceSet.of(image_set)
        settings = [(f"B = {b}", disjoint(spans[dataset], b), None) for b in BATCH_SIZES]
        if aggregates and dataset == "cifar10":
            settings += [(f"SecAgg {c} × {n} = {c * n}", disjoint(spans[dataset], n, c), None) for c, n in AGGREGATES]
            settings += [(label, disjoint(spans[dataset], 64), plan) for label, plan in FEDAVG]
        for label, batches, plan in settings:
            row = {"dataset": dataset, "setting": label} | run_row(image_set, reference, batches, attacks, plan)
            rows.append(row)
            print_row(row, attacks)
    return rows


def print_row(row: dict, attacks: dict[str, dict]) -> None:
    cells = [f"{row[a]['reidentified']:.2f} / {row[a]['psnr>=20']:.2f} / {row[a]['median_psnr']:.1f} dB / "
             f"{row[a]['seconds']:.2f} s" for a in attacks]
    first = row[next(iter(attacks))]
    print(f"| {row['dataset']} | {row['setting']} | {first['images']} ({first['updates']}) | " + " | ".join(cells)
          + f" | {row['peak_mib']:.0f} MiB |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["heldout", "tune"], default="heldout")
    parser.add_argument("--datasets", nargs="+", default=["cifar10", "mnist"])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the attacks use one thread; so do the victims' gradients and the scoring
    if args.part == "tune":
        attacks = {"cpa": {}, "cpa:raw": {"filter": "none"}, "cpa:minmax": {"intensity": "minmax"}}
        spans, aggregates = TUNING, False
    else:
        attacks, spans, aggregates = {"cpa": {}, "linear": {}}, HELD_OUT, True
    print(f"peak memory before any attack: {peak_mib():.0f} MiB")
    print("| dataset | setting | images (updates) | " + " | ".join(
        f"{a}: re-identified / ≥ 20 dB / median PSNR / s per update" for a in attacks) + " | peak memory |")
    rows = measure(args.datasets, spans, attacks, aggregates)
    write_json(args.out, {"part": args.part, "spans": spans, "rows": rows})


if __name__ == "__main__":
    main()
