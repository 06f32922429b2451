"""``fedleak report``: not built yet."""

from fedleak.errors import UserError


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="(not built yet)")
    p.add_argument("args", nargs="*")
    p.set_defaults(run=run)


def run(args) -> int:
    raise UserError("'fedleak report' is not built yet")
