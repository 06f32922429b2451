"""``fedleak audit``: per-layer rank analysis of a registered model before any training or data
(see fedleak.drivers.audit)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fedleak.errors import UserError

DESCRIPTION = (
    "Before any training or data: for every layer of a registered model, the unknowns, gradient and forward "
    "constraints, their float64 rank for the model's initialisation and a random probe input (per stride residue "
    "class), the deficiency, the hybrid paper's security metric (COPA) and R-GAP's rank analysis, and whether "
    "R-CONV, R-GAP or only the hybrid method can invert the layer-by-layer systems."
)


def add_parser(sub) -> None:
    p = sub.add_parser("audit", help="rank analysis of a model: which analytic attack inverts it exactly",
                       description=DESCRIPTION)
    p.add_argument("--model", required=True, help="a registered model (fedleak models lists them)")
    p.add_argument("--dataset", required=True, help="mnist | fashion_mnist | cifar10 | cifar100 | lfw (input shape)")
    p.add_argument("--activation", help="relu | leaky_relu | sigmoid | tanh (default: the model's)")
    p.add_argument("--batch-size", type=int, default=1, help="images per update (default 1)")
    p.add_argument("--image-size", type=int, help="input side in pixels (default: the dataset's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the model's initialisation and of the probe input")
    p.add_argument("--probes", type=int, default=None,
                   help="random probe inputs for networks with ReLU, whose ranks depend on the input (default 4)")
    p.add_argument("--max-dense", type=int, default=None,
                   help="largest dense matrix (entries) factored for an exact rank; beyond it the rank is a bound")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the report as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # lazy (start-up): loads only when this command runs, not for every command's parser
    from fedleak.drivers.audit import MAX_DENSE, RELU_PROBES, audit, render

    max_dense = MAX_DENSE if args.max_dense is None else args.max_dense
    if max_dense < 0:
        raise UserError(f"--max-dense: must be ≥ 0, got {max_dense}")
    report = audit(args.model, args.dataset, activation=args.activation, batch_size=args.batch_size,
                   image_size=args.image_size, seed=args.seed, max_dense=max_dense,
                   probes=RELU_PROBES if args.probes is None else args.probes)
    print(render(report))
    if args.json is not None:
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report.as_dict(), indent=2, ensure_ascii=False) + "\n")
        except OSError as exc:
            raise UserError(f"--json: cannot write {args.json}: {exc.strerror}") from None
    return 0
