"""Scenario files: strict schema and a loader whose errors are one clear line."""

from fedleak.config.loader import load_scenario, parse_scenario
from fedleak.config.schema import AttackConfig, DataConfig, Scenario, TrainingConfig

__all__ = ["AttackConfig", "DataConfig", "Scenario", "TrainingConfig", "load_scenario", "parse_scenario"]
