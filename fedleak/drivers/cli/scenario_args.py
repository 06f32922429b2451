"""The options every command that reads a scenario shares: ``--set KEY=VALUE`` overrides (fedleak.config.overrides)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from fedleak.config.schema import Scenario

SET_HELP = ("change one field of the scenario, validated like the file: a dotted key and a YAML value, e.g. "
            "--set training.rounds=5 --set attacks[0].params.iterations=50 (repeatable; applied in order)")


def add_set_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)


def load_with_overrides(path: str | Path, assignments: Sequence[str] = ()) -> Scenario:
    """The scenario file, checked, with ``assignments`` applied to its resolved form and the result checked again
    (so the run directory's scenario.yaml is exactly what ran)."""
    # lazy (start-up): loads only when this command runs, not for every command's parser
    from fedleak.config.overrides import apply_overrides, describe
    from fedleak.drivers.scenarios import load_scenario, parse_scenario

    scenario = load_scenario(path)
    if not assignments:
        return scenario
    raw = apply_overrides(scenario.model_dump(mode="json"), assignments)
    return parse_scenario(raw, source=f"{path} with{describe(assignments)}")
