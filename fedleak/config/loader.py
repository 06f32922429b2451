"""Read a scenario file; any problem becomes one :class:`UserError` line naming the file and the field."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from fedleak.config.schema import DEFENSE_SETTINGS, PARTITION_SETTINGS, Scenario
from fedleak.errors import UserError


def load_scenario(path: str | Path) -> Scenario:
    """Load and fully check a scenario file (schema, then model/attack names and attack parameters)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such scenario file; pass the path of a .yaml file, e.g. scenarios/smoke.yaml")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(f"{path}: YAML syntax error{where}: {problem}") from None
    scenario = parse_scenario(raw, source=str(path))
    if scenario.name is None:
        scenario = scenario.model_copy(update={"name": path.stem})
    return scenario


def parse_scenario(raw: Any, source: str = "<scenario>") -> Scenario:
    if not isinstance(raw, dict):
        raise UserError(f"{source}: a scenario is a YAML mapping with sections data, clients, training, …")
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"{source}: {_describe(exc)}") from None
    _check_names(scenario, source)
    return scenario


def _describe(exc: ValidationError) -> str:
    error = exc.errors()[0]
    # Drop the union-branch tags pydantic inserts (e.g. 'dirichlet') so the path reads like the YAML.
    parts = [p for p in error["loc"] if not (isinstance(p, str) and p in _UNION_TAGS)]
    field = ""
    for part in parts:
        field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{field}: unknown key; remove it or check its spelling"
    if kind == "missing":
        return f"{field}: required field is missing"
    message = error["msg"].removeprefix("Value error, ")
    got = error.get("input")
    shown = "" if isinstance(got, dict | list) or got is None else f" (got {got!r})"
    # Scenario-wide checks (arms against training and clients) name their field in the message itself.
    return f"{field}: {message}{shown}" if field else f"{message}{shown}"


#: The branch names pydantic puts into an error's path: the kinds of the tagged unions and the plain types.
_UNION_TAGS = {
    *PARTITION_SETTINGS.names(), *DEFENSE_SETTINGS.names(),
    "str", "int", "float", "bool", "list[int]", "list[float]",
}


def _check_names(scenario: Scenario, source: str) -> None:
    """Names resolved against the registries; attack parameters checked against each attack's config."""
    from fedleak.attacks import ATTACKS, check_params
    from fedleak.models import MODELS
    from fedleak.models.registry import ACTIVATIONS

    training = scenario.training
    if training.model not in MODELS:
        raise UserError(f"{source}: training.model: unknown model {training.model!r}; choose one of: "
                        f"{', '.join(MODELS.names())}")
    if training.activation is not None and training.activation not in ACTIVATIONS:
        raise UserError(f"{source}: training.activation: unknown activation {training.activation!r}; "
                        f"choose one of: {', '.join(ACTIVATIONS)}")
    _check_dp_sgd_model(scenario, source)
    for i, attack in enumerate(scenario.attacks):
        if attack.name not in ATTACKS:
            raise UserError(f"{source}: attacks[{i}].name: unknown attack {attack.name!r}; choose one of: "
                            f"{', '.join(ATTACKS.names())}")
        problem = check_params(attack.name, attack.params)
        if problem:
            raise UserError(f"{source}: attacks[{i}].params: {problem}")
        if attack.clients != "all":
            bad = [c for c in attack.clients if c >= scenario.clients.count]
            if bad:
                raise UserError(f"{source}: attacks[{i}].clients: client {bad[0]} does not exist "
                                f"(clients are 0..{scenario.clients.count - 1})")


def _check_dp_sgd_model(scenario: Scenario, source: str) -> None:
    """DP-SGD needs per-sample gradients: refuse, before the run, a model Opacus cannot train (e.g. BatchNorm)."""
    defenses = [scenario.training.defense] + [o.defense for o in scenario.clients.overrides if o.defense]
    if not any(d.kind == "dp_sgd" for d in defenses):
        return
    from fedleak.clients.dp_sgd import validate_model
    from fedleak.types import ModelSpec

    model = ModelSpec(scenario.training.model, 3, 32, 10, scenario.training.activation).build()
    problem = validate_model(model)
    if problem:
        raise UserError(f"{source}: defense dp_sgd: Opacus cannot train model {scenario.training.model!r} "
                        f"({problem}); choose a model without BatchNorm, e.g. lenet")


@functools.lru_cache(maxsize=8)
def scenario_from_json(text: str) -> Scenario:
    """A scenario shipped as JSON (ClientApps and mods are pickled into workers), validated once per process: every
    message of a run then shares one Scenario object, which also keys the process's loaded data."""
    return Scenario.model_validate_json(text)
