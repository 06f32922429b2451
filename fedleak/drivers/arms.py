"""Defenses compared on the same runs: one scenario with ``arms:``, one ordinary federation per arm.

Every arm keeps the scenario's seed, data, model and attack schedule and sets its own defense for every client
(plus any training fields it overrides). Each runs through the single-run path into ``arms/<name>/``, a full run
directory that ``fedleak report`` rebuilds on its own; the comparison on top (frontier.csv, frontier.png,
report.html) is derived from those directories by :func:`fedleak.report.frontier_page.build_frontier`.

Arms run one after another: each is a whole Flower simulation, which starts and stops Ray itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fedleak.config.schema import ArmConfig, Scenario
from fedleak.report import RunWriter
from fedleak.report.frontier import ARMS_DIR


@dataclass(frozen=True)
class Arm:
    """One arm ready to run: its name, its single-run scenario and its run directory."""

    name: str
    scenario: Scenario
    run_dir: Path


def arm_scenario(scenario: Scenario, arm: ArmConfig) -> Scenario:
    """The ordinary single-run scenario of one arm (no arms of its own, written to its own folder)."""
    name = f"{scenario.name}-{arm.name}" if scenario.name else arm.name
    return scenario.model_copy(update={
        "name": name,
        "training": scenario.arm_training(arm),
        "arms": [],
        # The arm's folder is chosen by the run with arms; a fixed output.dir would send every arm to one place.
        "output": scenario.output.model_copy(update={"dir": None}),
    })


def plan(scenario: Scenario, run_dir: Path) -> list[Arm]:
    """Every arm's scenario and folder, built before anything runs so a bad arm stops the run at the start."""
    return [Arm(arm.name, arm_scenario(scenario, arm), Path(run_dir) / ARMS_DIR / arm.name) for arm in scenario.arms]


def write_top(scenario: Scenario, run_dir: Path) -> None:
    """The scenario with its arms at the top of the run (the frontier reads the arms' order from it)."""
    RunWriter(Path(run_dir)).write_scenario(scenario)
