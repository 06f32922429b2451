"""``--set KEY=VALUE``: change a scenario's fields from the command line without copying its YAML.

The key is a dotted path through the scenario's sections (``training.rounds``, ``clients.overrides.0.batch_size``,
``attacks[1].params.iterations``); the value is read as YAML (``5``, ``0.1``, ``true``, ``[1, 3]``,
``{kind: prune, ratio: 0.5}``; empty for null). Overrides apply to the resolved scenario (every default filled in),
in order, and the result is validated by the same schema as a file: a wrong key or value is one line naming the
``--set`` and the field.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Any

import yaml

from fedleak.errors import UserError

_INDEX = re.compile(r"\[(\d+)\]")
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def parse_assignment(text: str) -> tuple[list[str | int], Any]:
    """``"attacks[0].params.iterations=50"`` → ``(["attacks", 0, "params", "iterations"], 50)``."""
    key, sep, value_text = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UserError(f"--set {text!r}: write KEY=VALUE, e.g. --set training.rounds=5")
    parts: list[str | int] = []
    for part in _INDEX.sub(r".\1", key).split("."):
        if not part:
            raise UserError(f"--set {text!r}: {key!r} has an empty part; write section.field, e.g. training.rounds")
        parts.append(int(part) if part.isdigit() else part)
    try:
        value = yaml.safe_load(value_text) if value_text.strip() else None
    except yaml.YAMLError:
        raise UserError(f"--set {text!r}: the value is not valid YAML; quote text with spaces or colons") from None
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 reads 1e-2 (no dot) as text; a user means the number
    return parts, value


def _assign(data: Any, path: list[str | int], value: Any, text: str) -> None:
    """Set ``data[path] = value``, creating missing mappings on the way (the schema then judges the keys)."""
    where = ""
    for i, part in enumerate(path):
        last = i == len(path) - 1
        if isinstance(part, int):
            if not isinstance(data, list):
                raise UserError(f"--set {text!r}: {where or 'the scenario'} is not a list; {part} cannot index it")
            if part >= len(data):
                raise UserError(f"--set {text!r}: {where} has {len(data)} entries (0..{len(data) - 1}); "
                                f"add entries in the YAML file")
        elif not isinstance(data, dict):
            raise UserError(f"--set {text!r}: {where} is a value ({data!r}), not a section with fields")
        if last:
            data[part] = value
            return
        if isinstance(part, str) and data.get(part) is None:
            data[part] = {}
        data = data[part]
        where = f"{where}[{part}]" if isinstance(part, int) else (f"{where}.{part}" if where else part)


def apply_overrides(raw: dict[str, Any], assignments: Sequence[str]) -> dict[str, Any]:
    """A copy of the scenario mapping ``raw`` with every ``KEY=VALUE`` of ``assignments`` applied in order."""
    result = copy.deepcopy(raw)
    for text in assignments:
        path, value = parse_assignment(text)
        _assign(result, path, value, text)
    return result


def describe(assignments: Sequence[str]) -> str:
    """How the overrides read in an error's source: ``scenarios/x.yaml with --set a=1 --set b=2``."""
    return "".join(f" --set {text}" for text in assignments)
