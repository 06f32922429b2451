"""Scenario files: strict schema and a reader whose errors are one clear line (names are checked one layer up, in
:mod:`fedleak.drivers.scenarios`)."""

from fedleak.config.loader import read_scenario, validate_scenario
from fedleak.config.schema import AttackConfig, DataConfig, Scenario, TrainingConfig

__all__ = ["AttackConfig", "DataConfig", "Scenario", "TrainingConfig", "read_scenario", "validate_scenario"]
