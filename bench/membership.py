"""Membership inference on one hospital's epoch update: how long it takes and what it finds.

    python bench/membership.py                           # 1600 members, 1600 non-members, LeNet, 2 threads
    python bench/membership.py --threads 1 --out runs/bench-membership.json

Setting (the issue's goal: ≤ 5 s on 2 CPU cores for both attacks together): the bundled MNIST training images
(5000), a ReLU LeNet from PyTorch's default initialisation (seed 0), one client that trains one epoch over 1600
images in shuffled minibatches of 32 at lr 0.1 (the hospitals of scenarios/defenses.yaml), and 1600 non-members from
the other 3400 images. The server scores all 3200 candidates blind with each membership attack; the scorer then
writes AUC and TPR at 1 % / 0.1 % FPR with their intervals. Nothing here was tuned: the setting is the scenario's.

Side by side in the same run: per-example gradients by ``torch.func`` (vmap + grad, what the attack uses) against a
Python loop of one backward pass per candidate, on the same 3200 candidates (the loop's ratio is the reason for
vmap). Timings on a shared machine are noisy; the AUCs do not depend on load.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from bench_io import write_json

from fedleak.attacks.membership import list_membership_attacks, per_example_gradients, score_candidates
from fedleak.clients.update import LocalTraining, round_batches, train_update
from fedleak.config.schema import NoDefense
from fedleak.data import load_bundled
from fedleak.metrics.membership import score_membership
from fedleak.observe import observe
from fedleak.training import loss_of
from fedleak.types import ModelSpec, ThreatModel


def epoch_update(members: int, seed: int):
    """(observation of one client's epoch update, candidate images, labels, truth) on bundled MNIST."""
    data = load_bundled("mnist", "train", None)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data))
    shard, outside = order[:members], order[members:2 * members]
    spec = ModelSpec("lenet", data.channels, data.image_size, data.num_classes, "relu")
    torch.manual_seed(seed)
    model = spec.build()
    for module in model.modules():
        if module is not model and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    plan = LocalTraining("epochs", 32, 1, 1, 0.1)
    batches = [tuple(map(torch.as_tensor, data.get(b))) for b in round_batches(shard, plan, seed, 0, 1)]
    batches = [(x.float(), y.long()) for x, y in batches]
    update, _ = train_update(model, batches, plan, NoDefense(), torch.Generator(), len(shard))
    meta = {"round": 1, "client": 0, "batch_size": 32, "local_steps": len(batches), "lr": 0.1, "local_epochs": 1,
            "num_examples": members}
    observation = observe(spec, model.state_dict(), update, "epochs", ThreatModel(), metadata=meta)
    candidates = np.concatenate([shard, outside])
    truth = np.concatenate([np.ones(members, bool), np.zeros(members, bool)])
    mix = rng.permutation(len(candidates))
    images, labels = data.get(candidates[mix])
    return observation, torch.as_tensor(images).float(), torch.as_tensor(labels).long(), truth[mix]


def loop_gradients(observation, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The baseline: one backward pass per candidate."""
    model = observation.build_model()
    loss = loss_of(model)
    rows = []
    for x, y in zip(images, labels, strict=True):
        model.zero_grad()
        loss(model(x[None]), y[None]).backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    return torch.stack(rows)


CPU_SECONDS: list[float] = []


def timed(fn):
    """(value, wall seconds); the process's CPU seconds go to CPU_SECONDS (they do not grow with other jobs' load)."""
    start, cpu = time.perf_counter(), time.process_time()
    value = fn()
    CPU_SECONDS.append(time.process_time() - cpu)
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=1600)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    observation, images, labels, truth = epoch_update(args.members, args.seed)
    print(f"{args.members} members + {args.members} non-members, LeNet (relu), 1 epoch of minibatches of 32, "
          f"{args.threads} threads")
    results = {"members": args.members, "non_members": args.members, "threads": args.threads, "attacks": {}}
    total = 0.0
    for name in list_membership_attacks():
        scores, seconds = timed(lambda n=name: score_candidates(observation, images, labels, attack=n))
        total += seconds
        s = score_membership(scores, truth)
        one, tenth = s.tpr(0.01), s.tpr(0.001)
        print(f"  {name:20s} {seconds:6.2f} s wall, {CPU_SECONDS[-1]:6.2f} s CPU  "
              f"AUC {s.auc:.3f} [{s.auc_low:.3f}, {s.auc_high:.3f}]  "
              f"TPR@1%FPR {one.tpr:.3f} [{one.low:.3f}, {one.high:.3f}] ({one.true_positives}/{one.members}, "
              f"{one.false_positives} FP of {one.non_members})  TPR@0.1%FPR {tenth.tpr:.3f} "
              f"[{tenth.low:.3f}, {tenth.high:.3f}] ({tenth.true_positives}/{tenth.members})")
        results["attacks"][name] = {"seconds": seconds, "cpu_seconds": CPU_SECONDS[-1], "auc": s.auc,
                                    "auc_interval": [s.auc_low, s.auc_high],
                                    "tpr_at_1pct_fpr": one.__dict__, "tpr_at_0_1pct_fpr": tenth.__dict__}
    cpu = sum(CPU_SECONDS)
    print(f"  both attacks: {total:.2f} s wall, {cpu:.2f} s CPU (goal ≤ 5 s on 2 cores; load average "
          f"{os.getloadavg()[0]:.0f} while measured)")
    model = observation.build_model()
    weights = dict(model.state_dict())
    vmapped, vmap_s = timed(lambda: torch.cat([per_example_gradients(model, weights, images[i:i + 512],
                                                                     labels[i:i + 512])
                                               for i in range(0, len(images), 512)]))
    # The loop runs on a tenth of the candidates (its time scaled by 10): all 3200 took 16 min on the shared machine.
    part = len(images) // 10
    looped, loop_s = timed(lambda: loop_gradients(observation, images[:part], labels[:part]))
    loop_s *= len(images) / part
    agree = float((vmapped[:part] - looped).abs().max())
    print(f"  per-example gradients of {len(images)}: torch.func {vmap_s:.2f} s ({CPU_SECONDS[-2]:.2f} s CPU), "
          f"Python loop {loop_s:.2f} s "
          f"(timed on {part}, scaled; loop / vmap = {loop_s / vmap_s:.1f}×; max difference {agree:.1e})")
    results.update(both_seconds=total, both_cpu_seconds=cpu, load_average=os.getloadavg()[0], vmap_seconds=vmap_s,
                   loop_seconds=loop_s, max_difference=agree)
    write_json(args.out, results)


if __name__ == "__main__":
    main()
