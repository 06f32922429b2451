"""``fedleak attack``: one attack on one victim update, outside any federated run.

The victim is the same client as in a simulation: the model from the registry (paper init, seeded), its
update from ``fedleak.training`` (one-batch gradient or K local SGD steps), the attacker's view from
``fedleak.observe`` with the threat model the flags grant. Outputs go to ``--out``: reconstruction.png (target,
reconstruction and loss curve side by side), target.png, recon.png, history.png and metrics.json.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import torch

from fedleak.defaults import DEFAULT_SUCCESS_PSNR
from fedleak.devices import resolve_device
from fedleak.drivers.cli.simulate import add_force, claim_run_dir
from fedleak.errors import UserError

DESCRIPTION = (
    "Run one gradient-leakage attack on one victim update and score it. The victim trains like a simulation "
    "client (registry model with its paper init, seeded; one-batch gradient or K local SGD steps); the attacker "
    "sees only what the threat-model flags grant. Writes reconstruction.png (target, reconstruction and loss curve "
    "side by side), target.png, recon.png, history.png and metrics.json into --out."
)

#: CLI shorthand → the attack config field names it may stand for, first match wins.
SHORTHANDS: dict[str, tuple[str, ...]] = {
    "iters": ("iterations", "iters", "max_iterations", "num_iterations", "steps"),
    "tv": ("tv_weight", "tv", "total_variation"),
}


def add_parser(sub) -> None:
    p = sub.add_parser("attack", help="run one attack on one victim update and score it", description=DESCRIPTION)
    p.add_argument("--attack", required=True,
                   help="a registered attack (fedleak attacks lists them with their papers and assumptions)")
    p.add_argument("--model", required=True, help="a registered model (fedleak models lists them)")
    p.add_argument("--dataset", required=True, help="mnist | fashion_mnist | cifar10 | cifar100 | lfw")
    p.add_argument("--source", default="bundled", choices=["bundled", "npz", "torchvision", "folder"],
                   help="where the images come from (default: bundled, offline)")
    p.add_argument("--path", help="file or folder for --source npz/folder/torchvision")
    p.add_argument("--split", choices=["train", "test"], help="dataset split (default: train when it exists)")
    p.add_argument("--image-size", type=int, help="resize images to this side (default: the dataset's)")
    p.add_argument("--non-square", choices=["crop", "refuse"], default="crop",
                   help="images whose height and width differ: crop their central square (default) or refuse them")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--index", type=int, help="index of the single victim image")
    which.add_argument("--indices", type=int, nargs="+", help="indices of the victim batch")
    p.add_argument("--image", type=Path, help="a single image file as the victim (needs --label)")
    p.add_argument("--label", type=int, help="class index of --image")
    p.add_argument("--num-classes", type=int,
                   help="size of the label space, i.e. of the model's head (default: the dataset's; needed for a "
                        "single LFW image, which has none); every label must lie below it")
    p.add_argument("--iters", type=int, help="optimisation iterations (for attacks that iterate)")
    p.add_argument("--tv", type=float,
                   help="total-variation weight: dlg, idlg, fedavg (relative to the L2 objective's scale; default: "
                        "the measured one for the image kind, 1e-4 for colour images above 32 px, else 0) and "
                        "inverting_gradients (default 1e-4, as published); 0 turns the prior off. metrics.json states "
                        "the prior used (diagnostics.image_prior)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="any other attack config field, e.g. --param restarts=2 (repeatable)")
    p.add_argument("--update", choices=["gradient", "local_steps", "epochs"], default="gradient",
                   help="what the victim sends: a one-batch gradient, weights after --steps SGD steps on the batch, "
                        "or weights after --epochs passes over the images in minibatches of --batch-size")
    p.add_argument("--steps", type=int, default=1, help="local SGD steps for --update local_steps")
    p.add_argument("--epochs", type=int, default=1, help="passes over the victim's images for --update epochs")
    p.add_argument("--batch-size", type=int, help="minibatch size for --update epochs (default: all the images)")
    p.add_argument("--lr", type=float, default=0.1, help="client learning rate for --update local_steps/epochs")
    p.add_argument("--checkpoint", type=Path,
                   help="global weights to attack at (a state_dict, e.g. a run's checkpoints/round_NNN.pt); "
                        "default: the model's seeded initialisation")
    p.add_argument("--activation", help="relu | leaky_relu | sigmoid | tanh (default: the model's)")
    p.add_argument("--defense", metavar="KIND[,KEY=VALUE…]",
                   help="the victim's defense, as in a scenario: e.g. prune,ratio=0.5 | quantize,bits=8 | "
                        "local_dp,epsilon=50 | dp_sgd,noise_multiplier=0.5 (default: none)")
    p.add_argument("--labels-known", action="store_true", help="grant the attacker the batch's labels")
    p.add_argument("--hparams-unknown", action="store_true",
                   help="hide the client's lr and local steps from the attacker (granted by default)")
    p.add_argument("--batch-size-unknown", action="store_true",
                   help="hide the batch size from the attacker (granted by default)")
    p.add_argument("--seed", type=int, default=0, help="seed of the model's initialisation, the batch and the attack "
                                                        "(default 0)")
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto",
                   help="where the attack runs (default: auto, a GPU when torch sees one)")
    p.add_argument("--success-psnr", type=float, default=DEFAULT_SUCCESS_PSNR, help="PSNR (dB) counted as a success")
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    add_force(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # lazy (start-up): loads only when this command runs, not for every command's parser
    from fedleak.attacks import ATTACKS, get_attack
    from fedleak.models import MODELS

    attack_cls = ATTACKS.get(args.attack)
    MODELS.get(args.model)
    params = attack_params(attack_cls, args)
    device = torch.device(resolve_device(args.device, strict=True))
    images, labels, origin, num_classes, image_set = victim_batch(args)
    observation = victim_observation(args, images, labels, num_classes)
    attack = get_attack(args.attack, device=device, seed=args.seed, **params)
    # Claimed (and so checked writable) before the attack runs: one attack's results per folder.
    claim_run_dir(args.out, "--out", args.force, "attack")

    # lazy (start-up): loads only when this command runs, not for every command's parser
    from fedleak.provenance import collect
    from fedleak.report import RunWriter

    # run.json says "running" until the outputs are written: a folder whose attack was stopped shows it.
    record = collect("attack", seed=args.seed, device=args.device, attack=args.attack, model=args.model)
    RunWriter(args.out).write_run_record(record)
    recon = _run_with_spinner(attack, observation, f"{args.attack} on {len(images)} image(s) of {args.dataset}")

    # lazy (start-up): loads only when this command runs, not for every command's parser
    from fedleak.metrics.reference import ReferenceSet
    from fedleak.report.single import write_single_attack

    summary = write_single_attack(
        args.out, recon, images, labels, success_psnr=args.success_psnr, reference=ReferenceSet.of(image_set),
        context={
            "attack": args.attack, "params": params, "model": args.model, "activation": args.activation,
            "dataset": args.dataset, "source": origin, "indices": _indices(args), "update": args.update,
            "local_steps": observation.metadata.local_steps or (args.steps if args.update == "local_steps" else 1),
            "local_epochs": args.epochs if args.update == "epochs" else None, "lr": args.lr,
            "checkpoint": str(args.checkpoint) if args.checkpoint else None,
            "defense": _defense_label(args.defense),
            "threat": observation.threat.model_dump(), "seed": args.seed, "device": str(device),
        },
    )
    RunWriter(args.out).write_run_record(record.finished("complete"))
    print(summary)
    return 0


def attack_params(attack_cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """--iters/--tv/--param mapped onto the attack's config fields; an option it lacks is a UserError."""
    fields = {f.name: f for f in dataclasses.fields(attack_cls.Config)}
    params: dict[str, Any] = {}
    for option, value in (("iters", args.iters), ("tv", args.tv)):
        if value is None:
            continue
        field = next((name for name in SHORTHANDS[option] if name in fields), None)
        if field is None:
            raise UserError(f"--{option}: attack {attack_cls.name!r} has no such setting; its settings are: "
                            f"{', '.join(fields) or 'none'}")
        params[field] = value
    for item in args.param:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UserError(f"--param {item!r}: write KEY=VALUE, e.g. --param restarts=2")
        if key not in fields:
            raise UserError(f"--param {key}: attack {attack_cls.name!r} has no such setting; its settings are: "
                            f"{', '.join(fields) or 'none'}")
        params[key] = _parse_value(text, fields[key].default)
    return params


def _parse_value(text: str, default: Any) -> Any:
    """Parse as the field's default is typed (bool, int, float); untyped defaults: number, bool, none or text."""
    lowered = text.strip().lower()
    booleans = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    try:
        if isinstance(default, bool):
            return booleans[lowered]
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except (KeyError, ValueError):
        raise UserError(f"--param: {text!r} is not a valid {type(default).__name__}") from None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if lowered in ("true", "false"):
        return booleans[lowered]
    return None if lowered == "none" else text


def _indices(args: argparse.Namespace) -> list[int]:
    if args.image is not None:
        return [0]
    if args.indices is not None:
        return list(args.indices)
    if args.index is not None:
        return [args.index]
    raise UserError("name the victim: --index I, --indices I J …, or --image FILE --label L")


def victim_batch(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, str, int, Any]:
    """The victim's images and labels through the same loader scenarios use, its origin, label space and image set."""
    # lazy (start-up): loads only when this command runs, not for every command's parser
    from pydantic import ValidationError

    from fedleak.config.errors import one_line
    from fedleak.config.schema import DataConfig
    from fedleak.data import load_images

    if args.image is not None:
        if args.label is None:
            raise UserError("--image needs --label (the class index of the image)")
        if args.index is not None or args.indices is not None:
            raise UserError("--image names the victim already; drop --index/--indices")
        raw = {"dataset": args.dataset, "source": "image", "path": str(args.image), "label": args.label}
    else:
        if args.label is not None:
            raise UserError("--label goes with --image; with --index the label comes from the dataset")
        raw = {"dataset": args.dataset, "source": args.source, "path": args.path}
    raw |= {"split": args.split, "image_size": args.image_size, "non_square": args.non_square,
            "num_classes": args.num_classes}
    try:
        config = DataConfig.model_validate(raw)
    except ValidationError as exc:
        raise UserError(one_line(exc, default_field="data")) from None
    image_set = load_images(config)
    indices = _indices(args)
    bad = [i for i in indices if not 0 <= i < len(image_set)]
    if bad:
        raise UserError(f"index {bad[0]} is out of range: {image_set.source} has images 0..{len(image_set) - 1}")
    images, labels = image_set.get(indices)
    return images, labels, image_set.source, image_set.num_classes, image_set


def victim_observation(args: argparse.Namespace, images: torch.Tensor, labels: torch.Tensor, num_classes: int):
    """Seeded (or checkpointed) model, the client's update from the one client update, and the attacker's view."""
    # lazy (start-up): loads only when this command runs, not for every command's parser
    from fedleak.clients.update import LocalTraining
    from fedleak.clients.victim import victim_observation as server_view
    from fedleak.types import ModelSpec, ThreatModel

    if args.update != "gradient" and (args.steps < 1 or args.epochs < 1 or args.lr <= 0):
        raise UserError(f"--update {args.update} needs --steps ≥ 1, --epochs ≥ 1 and --lr > 0")
    spec = ModelSpec(name=args.model, in_channels=images.shape[1], image_size=images.shape[-1],
                     num_classes=num_classes, activation=args.activation)
    torch.manual_seed(args.seed)
    try:
        model = spec.build()
    except (ValueError, TypeError) as exc:
        raise UserError(f"--model {args.model}: cannot build it for {tuple(images.shape[1:])} images: {exc}") from None
    if args.checkpoint is not None:
        # lazy (start-up): loads only when this command runs, not for every command's parser
        from fedleak.server.app import load_checkpoint

        if not args.checkpoint.is_file():
            raise UserError(f"--checkpoint: no such file {args.checkpoint}")
        load_checkpoint(model, args.checkpoint, "--checkpoint")
    plan = LocalTraining(args.update, args.batch_size or len(images), args.steps, args.epochs, args.lr)
    threat = ThreatModel(labels_known=args.labels_known, local_hparams_known=not args.hparams_unknown,
                         batch_size_known=not args.batch_size_unknown)
    observation, _ = server_view(spec, model, images, labels, plan, defense=parse_defense(args.defense),
                                 seed=args.seed, threat=threat)
    return observation


def parse_defense(text: str | None):
    """``KIND[,KEY=VALUE…]`` as a scenario's defense model; a bad one is a UserError naming the option."""
    # lazy (start-up): loads only when this command runs, not for every command's parser
    from pydantic import TypeAdapter, ValidationError

    from fedleak.config.errors import one_line
    from fedleak.defenses import AnyDefense, NoDefense

    if not text:
        return NoDefense()
    kind, *pairs = [part.strip() for part in text.split(",")]
    settings: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UserError(f"--defense: {pair!r} is not KEY=VALUE; e.g. --defense prune,ratio=0.5")
        settings[key] = value
    try:
        # Values arrive as strings; pydantic's lax mode turns "0.5" into a float where the field wants one.
        return TypeAdapter(AnyDefense).validate_python({"kind": kind, **settings})
    except ValidationError as exc:
        raise UserError(f"--defense: {one_line(exc, default_field='kind')}") from None


def _defense_label(text: str | None) -> str:
    return parse_defense(text).label()


def _run_with_spinner(attack, observation, what: str):
    # lazy (start-up): loads only when this command runs, not for every command's parser
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                  transient=True) as progress:
        progress.add_task(f"running {what}", total=None)
        return attack(observation)
