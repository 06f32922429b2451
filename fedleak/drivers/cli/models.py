"""``fedleak models``: the registered models with their parameter counts."""


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list registered models with parameter counts")
    p.add_argument("--channels", type=int, default=3, help="input channels the models are built for (default 3)")
    p.add_argument("--size", type=int, default=32, help="input side in pixels (default 32)")
    p.add_argument("--classes", type=int, default=10, help="output classes (default 10)")
    p.set_defaults(run=run)


def run(args) -> int:
    # lazy (start-up): loads only when this command runs, not for every command's parser
    from fedleak.models import model_summary  # torch/torchvision only when this command runs

    print(f"models for {args.channels}×{args.size}×{args.size} inputs, {args.classes} classes:")
    for name, count in model_summary(args.channels, args.size, args.classes):
        shown = f"{count:>12,d} parameters" if count is not None else "           - (does not take this input size)"
        print(f"  {name:24s} {shown}")
    return 0
