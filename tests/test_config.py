"""Scenario schema and `fedleak validate`: valid files pass; each kind of bad input gives one line and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fedleak.drivers.cli.main import main
from fedleak.drivers.scenarios import load_scenario, parse_scenario
from fedleak.errors import UserError

ROOT = Path(__file__).resolve().parents[1]

MINIMAL = {
    "data": {"dataset": "mnist"},
    "clients": {"count": 2},
    "training": {"rounds": 1, "model": "lenet"},
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    return path


def with_change(change: dict) -> str:
    """MINIMAL with one nested change, as YAML text."""
    scenario = yaml.safe_load(yaml.safe_dump(MINIMAL))
    for dotted, value in change.items():
        *parents, leaf = dotted.split(".")
        node = scenario
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return yaml.safe_dump(scenario)


def validate(path: Path, capsys) -> tuple[int, str]:
    code = main(["validate", str(path)])
    captured = capsys.readouterr()
    return code, captured.err


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "scenarios").glob("*.yaml")))
def test_shipped_scenarios_validate(name: str, capsys) -> None:
    code = main(["validate", str(ROOT / "scenarios" / name)])
    assert code == 0, capsys.readouterr().err


def test_defaults_and_client_overrides() -> None:
    scenario = parse_scenario(
        {**MINIMAL, "clients": {"count": 3, "overrides": [{"client": 1, "batch_size": 1, "local_steps": 4}]}}
    )
    assert scenario.seed == 0 and scenario.device == "auto"
    assert scenario.threat_model.labels_known is False
    assert scenario.client_settings(0) == (8, 1, 0.1)
    assert scenario.client_settings(1) == (1, 4, 0.1)


def test_name_defaults_to_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "my_lab.yaml"
    path.write_text(yaml.safe_dump(MINIMAL))
    assert load_scenario(path).name == "my_lab"


BAD_INPUTS = {
    "unknown key": (with_change({"training.epochs": 3}), ["training.epochs", "unknown key"]),
    "unknown top-level key": (with_change({"colour": "red"}), ["colour", "unknown key"]),
    "wrong type": (with_change({"training.rounds": "many"}), ["training.rounds", "integer"]),
    "zero batch size": (with_change({"training.batch_size": 0}), ["training.batch_size", "greater than 0"]),
    "negative batch size": (with_change({"training.batch_size": -4}), ["training.batch_size", "greater than 0"]),
    "negative override batch size": (
        with_change({"clients.overrides": [{"client": 0, "batch_size": -1}]}),
        ["clients.overrides[0].batch_size", "greater than 0"],
    ),
    "unknown dataset": (with_change({"data.dataset": "imagenet"}), ["data.dataset", "mnist", "cifar10"]),
    "unknown model": (with_change({"training.model": "vgg99"}), ["training.model", "vgg99", "lenet"]),
    "unknown attack": (with_change({"attacks": [{"name": "magic"}]}), ["attacks[0].name", "magic"]),
    "unknown partition": (with_change({"clients.partition": {"kind": "random"}}), ["clients.partition", "iid"]),
    "override for a missing client": (
        with_change({"clients.overrides": [{"client": 5, "batch_size": 1}]}),
        ["clients", "client 5"],
    ),
    "npz without a path": (with_change({"data.source": "npz"}), ["data", "data.path"]),
    "yaml syntax": (
        "data:\n  dataset: mnist\n  source: [bundled\nclients: {count: 2}\n",
        ["YAML syntax error", "line"],
    ),
    "not a mapping": ("- just\n- a list\n", ["YAML mapping"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_clear_line(case: str, tmp_path: Path, capsys) -> None:
    text, expected = BAD_INPUTS[case]
    path = write(tmp_path, text)
    code, err = validate(path, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert str(path) in lines[0]
    for fragment in expected:
        assert fragment in lines[0], (fragment, lines[0])


def test_missing_file_is_one_clear_line(tmp_path: Path, capsys) -> None:
    code, err = validate(tmp_path / "nope.yaml", capsys)
    assert code == 2
    assert err.count("\n") == 1 and "nope.yaml" in err and "no such scenario file" in err


def test_unknown_attack_parameter_names_the_field(tmp_path: Path, capsys) -> None:
    attack = sorted(__import__("fedleak.attacks", fromlist=["x"]).list_attacks())
    if not attack:
        pytest.skip("no attack registered")
    path = write(tmp_path, with_change({"attacks": [{"name": attack[0], "params": {"bogus_knob": 1}}]}))
    code, err = validate(path, capsys)
    assert code == 2 and "attacks[0].params" in err and "bogus_knob" in err


def test_user_error_is_single_line() -> None:
    assert "\n" not in str(UserError("first line\n  second line"))


def test_a_shipped_scenario_is_validated_once_per_process_and_shares_its_data(monkeypatch):
    from fedleak.config.loader import scenario_from_json
    from fedleak.config.schema import Scenario
    from fedleak.federated_data import federated_data

    text = load_scenario(ROOT / "scenarios" / "smoke.yaml").model_dump_json()
    scenario_from_json.cache_clear()
    calls = []
    original = Scenario.model_validate_json
    monkeypatch.setattr(Scenario, "model_validate_json", lambda data: calls.append(1) or original(data))
    first = scenario_from_json(text)
    assert all(scenario_from_json(text) is first for _ in range(5)) and len(calls) == 1
    assert federated_data(first) is federated_data(first)
