"""The ``fedleak`` command. Every subcommand turns bad input into one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import sys

from fedleak.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    from fedleak.drivers.cli import attack, audit, deploy, models, report, reproduce, simulate, validate

    parser = argparse.ArgumentParser(prog="fedleak", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (validate, models, audit, attack, simulate, deploy, report, reproduce):
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except UserError as exc:
        print(f"fedleak {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"fedleak {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
