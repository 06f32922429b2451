"""The FedAvg attack (Dimitrov et al. 2022, arXiv 2206.00866) against the plain epoch simulation (``idlg``) on the
same epoch updates.

A victim client holds n real MNIST digits (held out: drawn from the 5000 bundled training images; the attack was
tuned on test digits 0–5) and runs E epochs of minibatch SGD (batches of B, shuffled per epoch, lr 0.01) on DLG's
sigmoid LeNet with its uniform(−0.5, 0.5) init — the attack-friendly model — through the one client update
(``fedleak.clients.update``). The server is granted lr, E and B. Per setting and attack: the share of the n images
at ≥ 20 dB PSNR, the share re-identified (the nearest of the 5000 images by SSIM is the true one,
``fedleak.metrics.reference``), mean PSNR, label accuracy, seconds per update and the peak resident memory of the
process that ran the attack (``resource.getrusage``; each attack runs in its own spawned process).

    python bench/fedavg.py --setting 10,5,2 --victims 3 --out runs/bench-fedavg.json
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_io import write_json

from fedleak.attacks import get_attack
from fedleak.clients.update import LocalTraining
from fedleak.clients.victim import victim_observation
from fedleak.config.schema import DataConfig
from fedleak.data import load_images
from fedleak.metrics import score_batch
from fedleak.metrics.reference import ReferenceSet
from fedleak.types import ModelSpec, ThreatModel

LR = 0.01
ATTACKS = ("fedavg", "idlg")


def victim(image_set, n: int, batch_size: int, epochs: int, seed: int, labels_known: bool = False):
    """Victim ``seed``: n random images of the set, a seeded model, its epoch update and the server's view."""
    indices = np.random.default_rng(seed).choice(len(image_set), size=n, replace=False).tolist()
    images, labels = image_set.get(indices)
    spec = ModelSpec("lenet", 1, images.shape[-1], image_set.num_classes, "sigmoid")
    torch.manual_seed(seed)
    model = spec.build()
    plan = LocalTraining("epochs", batch_size, 1, epochs, LR)
    observation, _ = victim_observation(spec, model, images, labels, plan, seed=seed,
                                        threat=ThreatModel(labels_known=labels_known))
    return observation, images, labels


def _attack_in_child(name: str, params: dict[str, Any], observation, pipe) -> None:
    start = time.perf_counter()
    recon = get_attack(name, **params)(observation)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    # numpy, not torch: torch sends tensors through shared memory that vanishes when this process exits.
    images = None if recon.images is None else recon.images.numpy()
    labels = None if recon.labels is None else recon.labels.numpy()
    pipe.send((images, labels, recon.status, recon.reason, seconds, peak_mb,
               recon.diagnostics.get("evaluations"), recon.diagnostics.get("labels_method")))
    pipe.close()


def run_attack(name: str, params: dict[str, Any], observation) -> tuple:
    """One attack in a fresh process, so its peak memory is its own (spawned: a forked child of a process that has
    run torch's thread pool can hang)."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_attack_in_child, args=(name, params, observation, send))
    process.start()
    result = receive.recv()
    process.join()
    return result


def measure(setting: tuple[int, int, int], victims: int, params: dict[str, dict[str, Any]], image_set,
            reference: ReferenceSet, labels_known: bool = False) -> list[dict[str, Any]]:
    n, batch_size, epochs = setting
    rows = []
    for seed in range(victims):
        observation, images, labels = victim(image_set, n, batch_size, epochs, seed, labels_known)
        for name in ATTACKS:
            recon_images, recon_labels, status, reason, seconds, peak, evaluations, label_rule = run_attack(
                name, params[name], observation)
            recon_images = None if recon_images is None else torch.from_numpy(recon_images)
            recon_labels = None if recon_labels is None else torch.from_numpy(recon_labels)
            score = score_batch(recon_images, recon_labels, images, labels, reference=reference)
            psnrs = [s.psnr for s in score.per_image if s.psnr is not None]
            rows.append({
                "n": n, "batch_size": batch_size, "epochs": epochs, "victim": seed, "attack": name,
                "status": status, "reason": reason, "psnr_per_image": psnrs,
                "at_20db": sum(p >= 20 for p in psnrs) / n, "reidentified": score.reidentified,
                "psnr": score.psnr, "label_accuracy": score.label_accuracy, "seconds": seconds,
                "peak_rss_mb": peak, "evaluations": evaluations, "labels_method": label_rule,
            })
            print(f"n={n} B={batch_size} E={epochs} victim {seed} {name}: ≥20 dB {rows[-1]['at_20db']:.2f}, "
                  f"re-identified {score.reidentified}, PSNR {score.psnr}, labels {score.label_accuracy}, "
                  f"{seconds:.0f} s, {peak:.0f} MB", flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| n, B, E | attack | images ≥ 20 dB | re-identified | mean PSNR | labels | s / update | peak RSS |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["n"], row["batch_size"], row["epochs"], row["attack"]), []).append(row)
    for (n, b, e, name), group in groups.items():
        images = n * len(group)
        at20 = sum(r["at_20db"] * n for r in group)
        reid = sum((r["reidentified"] or 0) * n for r in group)
        psnr = statistics.mean(r["psnr"] for r in group if r["psnr"] is not None)
        labels = statistics.mean(r["label_accuracy"] or 0 for r in group)
        seconds = statistics.median(r["seconds"] for r in group)
        peak = max(r["peak_rss_mb"] for r in group)
        lines.append(f"| {n}, {b}, {e} | `{name}` | {at20:.0f}/{images} | {reid:.0f}/{images} | {psnr:.1f} dB | "
                     f"{labels:.0%} | {seconds:.0f} | {peak:.0f} MB |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", action="append", default=[], metavar="N,B,E",
                        help="images, batch size, epochs (repeatable; default 10,5,2)")
    parser.add_argument("--victims", type=int, default=3, help="victims (seeds 0 …) per setting")
    parser.add_argument("--iterations", type=int, default=300, help="L-BFGS iterations of both attacks")
    parser.add_argument("--labels-known", action="store_true", help="grant the attacker the labels")
    parser.add_argument("--out", type=Path, help="write every row as JSON")
    args = parser.parse_args()
    settings = [tuple(int(v) for v in s.split(",")) for s in args.setting or ["10,5,2"]]
    image_set = load_images(DataConfig(dataset="mnist"))
    reference = ReferenceSet.of(image_set)
    params = {"fedavg": {"iterations": args.iterations}, "idlg": {"iterations": args.iterations}}
    rows = [row for setting in settings for row in measure(setting, args.victims, params, image_set, reference,
                                                               args.labels_known)]
    print(table(rows))
    write_json(args.out, rows)


if __name__ == "__main__":
    main()
