"""``fedleak reproduce``: a source paper's experiment, the paper's figure beside fedleak's
(fedleak.drivers.reproduce)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fedleak.defaults import RUNS_ROOT
from fedleak.errors import UserError

DESCRIPTION = (
    "Run one source paper's experiment offline and write table.md and table.csv with the paper's reported figure, "
    "fedleak's measured figure and the setting side by side; the table is printed too. --quick runs a smaller sample."
)


def add_parser(sub) -> None:
    p = sub.add_parser("reproduce", help="a source paper's experiment, the paper's figure beside ours",
                       description=DESCRIPTION)
    p.add_argument("name", nargs="?", help="the entry (fedleak reproduce --list lists them)")
    p.add_argument("--list", action="store_true", help="list the entries and exit")
    p.add_argument("--out", type=Path, help="folder for table.md and table.csv (default runs/reproduce/NAME)")
    p.add_argument("--quick", action="store_true", help="a smaller sample (fewer images and iterations)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # lazy (start-up): loads only when this command runs, not for every command's parser
    from fedleak.drivers.reproduce import ENTRIES, reproduce

    if args.list:
        for name in ENTRIES:
            print(f"{name}: {ENTRIES.get(name).title}")
        return 0
    if args.name is None:
        raise UserError(f"name an entry; choose one of: {', '.join(ENTRIES.names())}")
    entry = ENTRIES.get(args.name)
    out = args.out if args.out is not None else RUNS_ROOT / "reproduce" / entry.name
    try:
        print(reproduce(entry.name, out, quick=args.quick))
    except OSError as exc:
        raise UserError(f"--out: cannot write {out}: {exc.strerror}") from None
    print(f"wrote {out / 'table.md'} and {out / 'table.csv'}")
    return 0
