"""The ``fedleak`` command. Every subcommand turns bad input into one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import sys

from fedleak.errors import UserError

DESCRIPTION = ("Measure how much training data leaks from federated-learning updates: run a scenario on Flower "
               "(simulate, deploy), attack one update (attack), list what is available (models, attacks, defenses). "
               "Bad input is one line on stderr and exit code 2.")


def build_parser() -> argparse.ArgumentParser:
    # lazy (start-up): each command's modules load only when it runs
    from fedleak.drivers.cli import attack, audit, deploy, listings, models, report, reproduce, simulate, validate

    parser = argparse.ArgumentParser(prog="fedleak", description=DESCRIPTION)
    parser.add_argument("--version", action=VersionAction, help="print fedleak's version (and commit) and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (validate, models, listings, audit, attack, simulate, deploy, report, reproduce):
        module.add_parser(sub)
    return parser


class VersionAction(argparse.Action):
    """``--version``: the version line is built only when asked (it may ask git for the commit)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        # lazy (start-up): each command's modules load only when it runs
        from fedleak.provenance import describe_version

        print(describe_version())
        parser.exit()


def main(argv: list[str] | None = None) -> int:
    # lazy (start-up): each command's modules load only when it runs
    from fedleak.provenance import set_command

    argv = sys.argv[1:] if argv is None else list(argv)
    set_command(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except UserError as exc:
        print(f"fedleak {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        # lazy (start-up): each command's modules load only when it runs
        from fedleak.signals import signal_name

        detail = f" {exc}" if str(exc) else ""
        print(f"fedleak {args.command}: interrupted{detail}", file=sys.stderr)
        return 143 if signal_name() == "SIGTERM" else 130


if __name__ == "__main__":
    sys.exit(main())
