"""Which attack runs on which update: the scenario's schedule, and the per-round draw of attacks that sample."""

from __future__ import annotations

import math

import numpy as np

from fedleak.config.schema import AttackConfig, Scenario
from fedleak.participation import sampled_clients
from fedleak.server.secure_aggregation import AGGREGATE


def scheduled(attack: AttackConfig, server_round: int, client: int) -> bool:
    """Whether the scenario asks for ``attack`` on this client in this round (the aggregate under secure
    aggregation is attacked in every scheduled round: no single client's update exists to choose from)."""
    rounds_ok = attack.rounds == "all" or server_round in attack.rounds
    clients_ok = attack.clients == "all" or client in attack.clients or client == AGGREGATE
    return rounds_ok and clients_ok


#: Keeps the attack-sampling draw apart from the other per-round streams.
_ATTACK_SAMPLING_STREAM = 4


def sampled_updates(scenario: Scenario, server_round: int, clients: list[int]) -> dict[int, set[int]]:
    """For each attack (by position) that samples (``sample``/``count``), the clients whose update it attacks this
    round: drawn from the clients it schedules, reproducibly from (seed, round, attack)."""
    chosen = {}
    for index, attack in enumerate(scenario.attacks):
        if attack.sample is None and attack.count is None:
            continue
        eligible = [c for c in clients if scheduled(attack, server_round, c)]
        k = attack.count if attack.count is not None else math.ceil(attack.sample * len(eligible))
        rng = np.random.default_rng([scenario.seed % 2**64, server_round, index, _ATTACK_SAMPLING_STREAM])
        picked = rng.choice(len(eligible), size=min(k, len(eligible)), replace=False) if eligible else []
        chosen[index] = {eligible[i] for i in picked}
    return chosen


def planned_attacks(scenario: Scenario) -> list[tuple[int, int, str]]:
    """Every ``(round, client, attack)`` the schedule runs when every sampled client replies, in submission order;
    client ``-1`` is the aggregate under secure aggregation. Updates over an attack's ``max_images`` are counted:
    they become ``skipped`` rows, known only once the update's size is (epoch updates cover the whole shard)."""
    clients = scenario.clients
    plan = []
    for server_round in range(1, scenario.training.rounds + 1):
        training = sampled_clients(clients.count, clients.per_round, scenario.seed, server_round)
        if scenario.training.secure_aggregation:
            targets, chosen = [AGGREGATE], {}
        else:
            targets, chosen = training, sampled_updates(scenario, server_round, training)
        for client in targets:
            for index, attack in enumerate(scenario.attacks):
                if scheduled(attack, server_round, client) and (index not in chosen or client in chosen[index]):
                    plan.append((server_round, client, attack.name))
    return plan
