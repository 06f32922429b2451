"""The command line a new user meets: --set overrides, --dry-run, the attack and defense listings, help text."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from fedleak.attacks import ATTACKS
from fedleak.config.overrides import apply_overrides, parse_assignment
from fedleak.defenses import DEFENSES
from fedleak.drivers.cli.listings import ATTACK_FACTS
from fedleak.drivers.cli.main import build_parser, main
from fedleak.drivers.cli.scenario_args import load_with_overrides
from fedleak.errors import UserError
from fedleak.server.schedule import planned_attacks

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "scenarios" / "smoke.yaml"
HOSPITALS = ROOT / "scenarios" / "hospitals.yaml"


def test_an_assignment_reads_a_dotted_key_with_indices_and_a_yaml_value() -> None:
    assert parse_assignment("training.rounds=5") == (["training", "rounds"], 5)
    assert parse_assignment("attacks[1].params.iterations=50") == (["attacks", 1, "params", "iterations"], 50)
    assert parse_assignment("clients.overrides.0.lr=1e-2") == (["clients", "overrides", 0, "lr"], 0.01)
    assert parse_assignment("training.defense={kind: prune, ratio: 0.5}")[1] == {"kind": "prune", "ratio": 0.5}
    assert parse_assignment("output.dir=") == (["output", "dir"], None)
    raw = {"training": {"rounds": 2}, "attacks": [{"name": "idlg", "params": {}}]}
    changed = apply_overrides(raw, ["training.rounds=5", "attacks[0].params.iterations=7"])
    assert changed == {"training": {"rounds": 5}, "attacks": [{"name": "idlg", "params": {"iterations": 7}}]}
    assert raw["training"]["rounds"] == 2  # the original is left as it was


def test_overrides_are_validated_and_the_resolved_scenario_carries_them() -> None:
    scenario = load_with_overrides(SMOKE, ["training.rounds=5", "training.defense={kind: prune, ratio: 0.5}"])
    assert scenario.training.rounds == 5 and scenario.training.defense.kind == "prune"
    assert scenario.model_dump(mode="json")["training"]["defense"] == {"kind": "prune", "ratio": 0.5}
    assert load_with_overrides(SMOKE) == load_with_overrides(SMOKE, [])


@pytest.mark.parametrize(("assignment", "message"), [
    ("training.rounds=abc", "smoke.yaml with --set training.rounds=abc: training.rounds: Input should be a valid "
                            "integer"),
    ("training.roundz=3", "training.roundz: unknown key"),
    ("training.rounds=-1", "training.rounds: Input should be greater than 0"),
    ("attacks[0].name=nope", "attacks[0].name: unknown attack 'nope'"),
    ("attacks.9.name=idlg", "attacks has 1 entries"),
    ("training.rounds.x=1", "training.rounds is a value (2), not a section"),
    ("rounds", "write KEY=VALUE"),
])
def test_a_bad_override_is_one_line_exit_2_naming_it(assignment: str, message: str, capsys) -> None:
    assert main(["validate", str(SMOKE), "--set", assignment]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_validate_reports_the_overridden_scenario(capsys) -> None:
    assert main(["validate", str(SMOKE), "--set", "training.rounds=7"]) == 0
    assert "7 rounds" in capsys.readouterr().out


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["simulate", str(HOSPITALS), "--dry-run", "--out", str(out), "--set", "training.rounds=2"]) == 0
    text = capsys.readouterr().out
    assert "rounds: 2; clients: 5 registered, 5 per round" in text
    # hospitals.yaml: iDLG and R-CONV on every update, DLG in rounds 1 and 3 on the three smallest batches.
    assert "attacks: auto executor, 23 scheduled in all (idlg 10, rconv 10, dlg 3)" in text
    assert "round 1: 13 (idlg 5, rconv 5, dlg 3) on clients 0-4" in text
    assert "round 2: 10 (idlg 5, rconv 5) on clients 0-4" in text
    assert "nothing was run or written" in text and not out.exists()


def test_the_plan_follows_client_sampling_attack_sampling_and_secure_aggregation() -> None:
    many = load_with_overrides(ROOT / "scenarios" / "many_clients.yaml", ["training.rounds=2"])
    plan = planned_attacks(many)
    assert len([p for p in plan if p[2] == "rconv"]) == 20  # every one of the 10 sampled clients, each round
    assert len([p for p in plan if p[2] == "idlg"]) == 4  # count: 2 of each round's updates
    secagg = load_with_overrides(ROOT / "scenarios" / "secure_aggregation.yaml")
    assert {client for _, client, _ in planned_attacks(secagg)} == {-1}


def test_every_registered_attack_is_listed_with_a_paper_and_its_assumptions(capsys) -> None:
    # fedleak's own attacks (other tests register throwaway ones at import).
    shipped = {name for name in ATTACKS.names() if ATTACKS.get(name).__module__.startswith("fedleak.attacks.")}
    assert len(shipped) >= 10 and shipped <= set(ATTACK_FACTS), "add the attack's paper and assumptions to ATTACK_FACTS"
    assert main(["attacks"]) == 0
    text = capsys.readouterr().out
    for name in shipped:
        assert f"\n{name}\n" in f"\n{text}"
    assert "arXiv 2001.02610" in text and "assumes" in text


def test_every_defense_is_listed_with_what_it_does_and_its_settings(capsys) -> None:
    assert main(["defenses"]) == 0
    text = capsys.readouterr().out
    for name in DEFENSES.names():
        assert f"\n{name}\n" in f"\n{text}"
    assert "arXiv 1607.00133" in text and "noise_multiplier=1.0" in text and "``" not in text


def _options(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, (*path, name))
        else:
            yield path, action


def test_every_option_has_help_and_no_help_shows_raw_backticks() -> None:
    missing = [(path, action.dest) for path, action in _options(build_parser()) if not action.help]
    assert missing == []
    ticks = [(path, action.dest) for path, action in _options(build_parser()) if "`" in (action.help or "")]
    assert ticks == []
    assert "`" not in build_parser().format_help()


def test_overrides_reach_the_loader_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="training.lr"):
        load_with_overrides(SMOKE, ["training.lr=fast"])


def test_progress_estimates_the_time_left_from_the_pace_so_far() -> None:
    from fedleak.server.progress import eta_text

    assert eta_text(30.0, 1, 4) == "ETA 1m30s" and eta_text(0.0, 0, 4) == "ETA –" and eta_text(9.0, 4, 4) == "ETA 0s"
    assert eta_text(3600.0, 1, 3) == "ETA 2h00m"


def test_deploy_progress_reads_rounds_and_attacks_from_the_run_directory(tmp_path: Path) -> None:
    from fedleak.drivers.cli.run_files_progress import RunFilesProgress

    said: list[str] = []
    watch = RunFilesProgress(tmp_path, rounds=3, scheduled=6, say=said.append)
    watch()
    assert said == []  # nothing written yet: nothing to say
    (tmp_path / "rounds.csv").write_text("round,loss\n1,0.5\n")
    (tmp_path / "leakage.csv").write_text("round,client\n1,0\n1,1\n")
    watch()
    watch()  # unchanged files: no second line
    assert len(said) == 1 and said[0].startswith("round 1/3 done · attacks 2/6 done · ETA ")
