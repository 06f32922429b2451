"""Load a scenario and check it whole: the schema (the kernel's :mod:`fedleak.config.loader`), then its names against
the registries — models, activations, attacks and each attack's parameters — and the defenses' checks of the model.

This sits above the kernel because the attack registry it reads is filled by ``fedleak.attacks``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fedleak.attacks import ATTACKS, check_params
from fedleak.attacks.membership import MEMBERSHIP_ATTACKS, per_example_gradients_problem
from fedleak.config.loader import read_scenario, validate_scenario
from fedleak.config.schema import Scenario
from fedleak.defenses import Defense
from fedleak.errors import UserError
from fedleak.models import MODELS
from fedleak.models.registry import ACTIVATIONS
from fedleak.runtime.cluster import cluster_address
from fedleak.types import ModelSpec


def load_scenario(path: str | Path) -> Scenario:
    """Load and fully check a scenario file (schema, then model/attack names and attack parameters)."""
    scenario = read_scenario(path)
    check_names(scenario, str(path))
    return scenario


def parse_scenario(raw: Any, source: str = "<scenario>") -> Scenario:
    """A scenario mapping, fully checked like :func:`load_scenario`."""
    scenario = validate_scenario(raw, source)
    check_names(scenario, source)
    return scenario


def check_names(scenario: Scenario, source: str) -> None:
    """Names resolved against the registries; attack parameters checked against each attack's config."""
    training = scenario.training
    if training.model not in MODELS:
        raise UserError(f"{source}: training.model: unknown model {training.model!r}; choose one of: "
                        f"{', '.join(MODELS.names())}")
    if training.activation is not None and training.activation not in ACTIVATIONS:
        raise UserError(f"{source}: training.activation: unknown activation {training.activation!r}; "
                        f"choose one of: {', '.join(ACTIVATIONS)}")
    _check_defense_models(scenario, source)
    _check_machine(scenario, source)
    _check_membership(scenario, source)
    _check_audit(scenario, source)
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


def _check_machine(scenario: Scenario, source: str) -> None:
    """Attacker actors beyond what this machine can hold: each imports torch (hundreds of MB) and they all start
    at once (they ask for no CPU), so 1000 of them ran the machine out of memory. A cluster the scenario names
    (``executor.address``) is judged by Ray, not here."""
    ex = scenario.executor
    limit = 2 * (os.cpu_count() or 1)
    if cluster_address(ex.address) is None and ex.workers > limit:
        raise UserError(f"{source}: executor.workers: {ex.workers} attacker processes on a machine with "
                        f"{os.cpu_count()} CPUs (at most {limit}); lower it, or name a cluster in executor.address")


def _check_defense_models(scenario: Scenario, source: str) -> None:
    """Refuse, before the run, a model a defense cannot protect (e.g. BatchNorm under DP-SGD): each defense's own
    :meth:`~fedleak.defenses.Defense.check_model`."""
    model = None
    for defense in scenario.defenses():
        if type(defense).check_model is Defense.check_model:
            continue  # no check: the model need not be built
        if model is None:
            model = ModelSpec(scenario.training.model, 3, 32, 10, scenario.training.activation).build()
        problem = defense.check_model(model, scenario.training.model)
        if problem:
            raise UserError(f"{source}: defense {defense.kind}: {problem}")


def _check_membership(scenario: Scenario, source: str) -> None:
    """Membership attack names, their clients, and a model whose records each have a gradient of their own."""
    membership = scenario.membership
    if membership is None:
        return

    for i, name in enumerate(membership.attacks):
        if name not in MEMBERSHIP_ATTACKS:
            raise UserError(f"{source}: membership.attacks[{i}]: unknown membership attack {name!r}; choose one of: "
                            f"{', '.join(MEMBERSHIP_ATTACKS.names())}")
    if membership.clients != "all":
        bad = [c for c in membership.clients if c >= scenario.clients.count]
        if bad:
            raise UserError(f"{source}: membership.clients: client {bad[0]} does not exist "
                            f"(clients are 0..{scenario.clients.count - 1})")
    model = ModelSpec(scenario.training.model, 3, 32, 10, scenario.training.activation).build()
    problem = per_example_gradients_problem(model, 3, 32, 10)
    if problem:
        raise UserError(f"{source}: membership: per-example gradients of model {scenario.training.model!r} cannot be "
                        f"computed ({problem}); choose a model without BatchNorm, e.g. lenet, or remove membership")


def _check_audit(scenario: Scenario, source: str) -> None:
    """Audited clients that exist, a round the federation trains, a model with per-example gradients. (How many
    canaries the shards and the held-out split can take is checked on the data: FederatedData.check_canaries.)"""
    audit = scenario.audit
    if audit is None:
        return
    if audit.clients != "all":
        bad = [c for c in audit.clients if c >= scenario.clients.count]
        if bad:
            raise UserError(f"{source}: audit.clients: client {bad[0]} does not exist "
                            f"(clients are 0..{scenario.clients.count - 1})")
    if audit.round is not None and audit.round > scenario.training.rounds:
        raise UserError(f"{source}: audit.round: round {audit.round} is past the last round "
                        f"(training.rounds: {scenario.training.rounds})")
    model = ModelSpec(scenario.training.model, 3, 32, 10, scenario.training.activation).build()
    problem = per_example_gradients_problem(model, 3, 32, 10)
    if problem:
        raise UserError(f"{source}: audit: per-example gradients of model {scenario.training.model!r} cannot be "
                        f"computed ({problem}); choose a model without BatchNorm, e.g. lenet, or remove audit")
