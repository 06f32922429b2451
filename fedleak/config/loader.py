"""Read a scenario file against the schema; any problem becomes one :class:`UserError` line naming the file and the
field."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from fedleak.config.errors import one_line
from fedleak.config.schema import PARTITION_SETTINGS, Scenario
from fedleak.errors import UserError
from fedleak.safe_yaml import YamlRefused, read_yaml


def read_scenario(path: str | Path) -> Scenario:
    """Read a scenario file and check it against the schema. Names (models, attacks) and attack parameters are
    checked against the registries one layer up, by :func:`fedleak.drivers.scenarios.load_scenario`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such scenario file; pass the path of a .yaml file, e.g. scenarios/smoke.yaml")
    try:
        raw = read_yaml(path)
    except YamlRefused as exc:
        raise UserError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(f"{path}: YAML syntax error{where}: {problem}") from None
    scenario = validate_scenario(raw, source=str(path))
    if scenario.name is None:
        scenario = scenario.model_copy(update={"name": path.stem})
    return scenario


def validate_scenario(raw: Any, source: str = "<scenario>") -> Scenario:
    """A scenario mapping checked against the schema (see :func:`read_scenario` for the names)."""
    if not isinstance(raw, dict):
        raise UserError(f"{source}: a scenario is a YAML mapping with sections data, clients, training, …")
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"{source}: {one_line(exc, skip=_UNION_TAGS)}") from None
    return scenario


#: The branch names pydantic puts into an error's path: the kinds of the tagged unions and the plain types (a
#: defense's errors carry no tag: its ``kind`` picks the class before pydantic validates it).
_UNION_TAGS = {
    *PARTITION_SETTINGS.names(),
    "str", "int", "float", "bool", "list[int]", "list[float]",
}


@functools.lru_cache(maxsize=8)
def scenario_from_json(text: str) -> Scenario:
    """A scenario shipped as JSON (ClientApps and mods are pickled into workers), validated once per process: every
    message of a run then shares one Scenario object, which also keys the process's loaded data."""
    return Scenario.model_validate_json(text)
