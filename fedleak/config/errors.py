"""A pydantic validation error as the one line a user reads: ``field: what is wrong (got value)``."""

from __future__ import annotations

from collections.abc import Collection

from pydantic import ValidationError


def one_line(exc: ValidationError, *, skip: Collection[str] = (), start: int = 0, default_field: str = "") -> str:
    """The first problem of ``exc`` (the first one that names a field, when any does) as one line.

    ``skip``: path parts to leave out, e.g. the branch names pydantic inserts for a tagged union, so the path reads
    like the YAML; ``start``: path parts to drop from the front; ``default_field``: the name used when the path is
    empty (a check across fields names its field in its message instead).
    """
    errors = exc.errors()
    error = next((e for e in errors if e["loc"]), errors[0])
    field = ""
    for part in error["loc"][start:]:
        if isinstance(part, str) and part in skip:
            continue
        field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
    field = field or default_field
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{field}: unknown key; remove it or check its spelling"
    if kind == "missing":
        return f"{field}: required field is missing"
    message = error["msg"].removeprefix("Value error, ")
    got = error.get("input")
    shown = "" if isinstance(got, dict | list) or got is None else f" (got {got!r})"
    return f"{field}: {message}{shown}" if field else f"{message}{shown}"
