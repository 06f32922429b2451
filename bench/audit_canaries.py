"""Which canaries audit DP-SGD strongest, measured: the one-run audit's lower bound on ε (Steinke, Nasr & Jagielski
2023, arXiv 2305.08846) for each canary kind, with DP-SGD's noise off (what the audit should catch) and on.

Setting: bundled MNIST (seed 0), one client whose shard is ``--base`` training images plus each of ``--canaries``
held-out canaries with probability ½; ReLU LeNet at PyTorch's default initialisation; one round of DP-SGD (clip 1,
Poisson rate ``--rate``, update kind ``--update``); the server scores every canary by gradient alignment
(fedleak.canary_scores) and guesses on the ``--guesses`` most confident (half in, half out).

    .venv/bin/python bench/audit_canaries.py --update gradient --rate 1.0
    .venv/bin/python bench/audit_canaries.py --sweep 0.5 1 2 4 8 --figure audit_sweep.png

``--sweep`` audits mislabelled canaries at each noise multiplier (noise on), plus the broken mechanism (noise off,
the accountant told ``--sigma``), and draws the empirical lower bound against the claimed ε with the diagonal.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from fedleak.canaries import draw_canaries
from fedleak.canary_scores import alignment_scores, audit_update, update_direction
from fedleak.clients.update import LocalTraining, round_batches, train_update
from fedleak.config.schema import DataConfig, TrainingConfig
from fedleak.data import load_images, split_eval
from fedleak.privacy import dp_sgd_round, dp_sgd_spent
from fedleak.privacy_audit import audit_from_scores
from fedleak.types import ModelSpec


def audit_once(kind: str, sigma: float, args: argparse.Namespace) -> tuple[float, int, float]:
    images = load_images(DataConfig(dataset="mnist", source="bundled"))
    labels = np.asarray(images.labels)
    train, held_out = split_eval(len(images), 0.2, args.seed)
    rng = np.random.default_rng(args.seed)
    base = rng.permutation(train)[: args.base]
    canaries = draw_canaries(held_out, labels[held_out], args.canaries, [0], images.num_classes, args.seed, kind)[0]
    inserted, inserted_labels = canaries.inserted()
    shard = np.concatenate([base, inserted])
    shard_labels = np.concatenate([labels[base], inserted_labels])
    torch.manual_seed(args.seed)
    model = ModelSpec("lenet", images.channels, images.image_size, images.num_classes, "relu").build()
    plan = LocalTraining(args.update, round(args.rate * len(shard)), 1, 1, args.lr)
    defense = TrainingConfig.model_validate(
        {"defense": {"kind": "dp_sgd", "max_grad_norm": 1.0, "noise_multiplier": sigma, "delta": 1e-5}}).defense
    positions = round_batches(np.arange(len(shard)), plan, args.seed, 0, 1, defense=defense)
    x_all = torch.as_tensor(images.get(shard)[0], dtype=torch.float32)
    y_all = torch.as_tensor(shard_labels, dtype=torch.int64)
    batches = [(x_all[p], y_all[p]) for p in positions]
    update, _ = train_update(model, batches, plan, defense, torch.Generator().manual_seed(args.seed), len(shard))
    if args.score == "informed":
        lookup = lambda idx: tuple(torch.as_tensor(a) for a in images.get(idx))  # noqa: E731
        result = audit_update(model, update, args.update != "gradient", canaries, lookup, base, labels[base],
                              clip=1.0, guesses=args.guesses, delta=1e-5)
    else:  # the plain cosine of gradient alignment, blind to the rest of the shard
        direction = update_direction(model, update, sends_weights=args.update != "gradient")
        x_c = torch.as_tensor(images.get(canaries.indices)[0], dtype=torch.float32)
        scores = alignment_scores(model, direction, x_c, torch.as_tensor(canaries.labels))
        result = audit_from_scores(scores.numpy(), canaries.included, args.guesses, delta=1e-5)
    return result.epsilon_lower, result.correct, len(shard)


def claimed_epsilon(sigma: float, args: argparse.Namespace) -> float:
    """ε the accountant reports for the expected shard (base + half the canaries) at noise ``sigma``."""
    shard = args.base + args.canaries // 2
    mechanism = dp_sgd_round(args.update, sigma, round(args.rate * shard), shard, 1, 1)
    return dp_sgd_spent(mechanism, 1, 1e-5).epsilon


def sweep(args: argparse.Namespace) -> None:
    """Lower bound against claimed ε over ``args.sweep`` noise multipliers, and the broken mechanism."""
    points = []
    print("| σ (told the accountant) | noise in training | claimed ε | ε lower bound (95 %) | correct / guesses |")
    for sigma, trained in [(s, s) for s in args.sweep] + [(args.sigma, 0.0)]:
        bound, correct, _ = audit_once("mislabelled", trained, args)
        claimed = claimed_epsilon(sigma, args)
        points.append((claimed, bound, trained == 0.0))
        print(f"| {sigma} | {'off' if trained == 0.0 else 'on'} | {claimed:.3f} | {bound:.3f} | "
              f"{correct} / {args.guesses} |")
    if args.figure:
        from fedleak.report.audit import audit_plot

        audit_plot([("", c, b, off) for c, b, off in points], Path(args.figure),
                   f"one-run audit: {args.canaries} canaries, {args.guesses} guesses")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--canaries", type=int, default=500)
    parser.add_argument("--guesses", type=int, default=100)
    parser.add_argument("--base", type=int, default=500)
    parser.add_argument("--update", choices=["gradient", "epochs"], default="gradient")
    parser.add_argument("--rate", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--sigma", type=float, default=4.0, help="the noise multiplier the accountant is told")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--score", choices=["alignment", "informed"], default="informed")
    parser.add_argument("--sweep", type=float, nargs="*", default=[], help="noise multipliers to sweep")
    parser.add_argument("--figure", default="", help="where the sweep's figure goes")
    args = parser.parse_args()
    if args.sweep:
        sweep(args)
        return
    print(f"claimed ε = {claimed_epsilon(args.sigma, args):.3f} at δ = 1e-5 (σ = {args.sigma}, update "
          f"{args.update}, Poisson rate {args.rate}; score {args.score})")
    print("| canaries | noise | ε lower bound (95 %) | correct / guesses | shard | seconds |")
    for kind in ("mislabelled", "held_out"):
        for sigma in (0.0, args.sigma):
            start = time.perf_counter()
            bound, correct, size = audit_once(kind, sigma, args)
            print(f"| {kind} | σ = {sigma} | {bound:.3f} | {correct} / {args.guesses} | {size} | "
                  f"{time.perf_counter() - start:.1f} |")


if __name__ == "__main__":
    main()
