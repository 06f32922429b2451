"""SPEAR (``spear``) against ``linear`` and ``cpa`` on the same small-batch gradients of ``mlp``.

Setting: the ``mlp`` model (flatten → 256 ReLU units with bias → 10 classes) at its seeded PyTorch initialisation
(seed = batch number), one float32 FedSGD gradient per batch from the one client update (``bench/cpa.py``'s
``observation``); the attacker knows the architecture and the weights it sent and is granted the batch size, no
labels. Every update is attacked by ``spear`` (defaults: at most 1 000 000 sampled submatrices, 1000 sign checks),
``linear`` (the closed form on the same layer: B flagged mixtures) and ``cpa`` (FastICA on the same layer).
Scores: share of images ≥ 20 dB PSNR, share re-identified (``fedleak.metrics.reidentified``: the reconstruction's
nearest image by SSIM among all images of the data source — CIFAR-10: the fixture's 1000 test images, MNIST: the
5000 bundled training images — is the true one), mean PSNR with each image's PSNR capped at ``PSNR_CAP`` dB (an exact
float recovery reaches 150–190 dB or infinity, which would swamp a mean), seconds per update (median, one torch
thread) and the process's peak resident memory after the row.

Images: ``spear``'s settings (zero tolerance, sparsity threshold τ, sampling budget and scheme, sign checks) were
tried on small synthetic layers, on the bundled MNIST and CIFAR-10 *test* images 0–15 (batches of 2, 4, 8 and 16),
and on a first run of this script over CIFAR-10 test images 128–191 and MNIST training images 1000–1063 (``TUNING``).
The figures come from held-out images: CIFAR-10 test images 192–255 of
``$FEDLEAK_FIXTURES/cifar10_test_first1000.npz`` and MNIST *training* images 1064–1127, cut into disjoint batches of
B (at most two batches of 16: a failing update spends the whole budget).

    FEDLEAK_FIXTURES=../shared/data python bench/spear.py --out runs/bench-spear.json
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import torch
from bench_io import write_json
from cpa import disjoint, load, observation, peak_mib

from fedleak.attacks import get_attack
from fedleak.metrics import score_batch
from fedleak.metrics.reference import ReferenceSet

HELD_OUT = {"cifar10": (192, 256), "mnist": (1064, 1128)}
#: Tried settings on (a first run of this script, before the budget and the sampling changed): not for figures.
TUNING = {"cifar10": (128, 192), "mnist": (1000, 1064)}
#: Updates per row, at most: a failing B = 16 update spends the whole sampling budget (about a minute).
MAX_UPDATES = {16: 2}
BATCH_SIZES = (2, 4, 8, 16)
ATTACKS = ("spear", "linear", "cpa")
#: PSNR above this counts as this much in the mean: beyond it an image is exact to float precision.
PSNR_CAP = 100.0


def run_row(image_set, reference, batches: list[list[list[int]]]) -> dict:
    """Attack every batch with every attack on the same update; pooled per-image figures per attack."""
    pooled = {name: {"psnr": [], "reid": [], "seconds": [], "failed": 0, "agreement": []} for name in ATTACKS}
    for number, groups in enumerate(batches):
        obs = observation(image_set, groups, seed=number)
        true, labels = image_set.get([i for g in groups for i in g])
        for name in ATTACKS:
            result = get_attack(name)(obs)
            score = score_batch(result.images, None, true, labels, reference=reference)
            entry = pooled[name]
            entry["psnr"] += [min(s.psnr, PSNR_CAP) if s.psnr is not None else 0.0 for s in score.per_image]
            entry["reid"] += [bool(s.reidentified) for s in score.per_image]
            entry["seconds"].append(result.seconds)
            entry["failed"] += result.status != "ok"
            entry["agreement"].append(result.diagnostics.get("sign_agreement"))
    return {name: summarise(p) for name, p in pooled.items()} | {"peak_mib": peak_mib()}


def summarise(pooled: dict) -> dict:
    psnr = np.array(pooled["psnr"])
    return {"images": len(psnr), "updates": len(pooled["seconds"]), "failed_updates": pooled["failed"],
            "psnr>=20": float(np.mean(psnr >= 20)), "reidentified": float(np.mean(pooled["reid"])),
            "mean_psnr_capped": float(np.mean(psnr)), "seconds": statistics.median(pooled["seconds"]),
            "sign_agreement": pooled["agreement"]}


def print_row(row: dict) -> None:
    cells = [f"{row[a]['psnr>=20']:.2f} / {row[a]['reidentified']:.2f} / {row[a]['mean_psnr_capped']:.1f} dB / "
             f"{row[a]['seconds']:.2f} s" for a in ATTACKS]
    first = row[ATTACKS[0]]
    print(f"| {row['dataset']} | B = {row['batch']} | {first['images']} ({first['updates']}) | "
          f"{first['failed_updates']} | " + " | ".join(cells) + f" | {row['peak_mib']:.0f} MiB |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["mnist", "cifar10"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=list(BATCH_SIZES))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the attacks use one thread; so do the victims' gradients and the scoring
    print(f"peak memory before any attack: {peak_mib():.0f} MiB")
    print("| dataset | B | images (updates) | spear failed updates | " + " | ".join(
        f"{a}: ≥ 20 dB / re-identified / mean PSNR (capped) / s per update" for a in ATTACKS) + " | peak memory |")
    rows = []
    for dataset in args.datasets:
        image_set = load(dataset)
        reference = ReferenceSet.of(image_set)
        for batch in args.batch_sizes:
            batches = disjoint(HELD_OUT[dataset], batch)[: MAX_UPDATES.get(batch)]
            row = {"dataset": dataset, "batch": batch} | run_row(image_set, reference, batches)
            rows.append(row)
            print_row(row)
    write_json(args.out, {"held_out": HELD_OUT, "tuning": TUNING, "psnr_cap": PSNR_CAP, "rows": rows})


if __name__ == "__main__":
    main()
