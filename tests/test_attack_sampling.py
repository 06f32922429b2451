"""Attacks that watch a sample of each round's updates (``sample`` / ``count``), reproducibly from the seed."""

from __future__ import annotations

import pytest

from fedleak.drivers.scenarios import parse_scenario
from fedleak.errors import UserError
from fedleak.server.schedule import sampled_updates


def _scenario(*attacks: dict, seed: int = 3):
    return parse_scenario({"seed": seed, "data": {"dataset": "mnist"}, "clients": {"count": 10},
                           "training": {"model": "lenet"}, "attacks": list(attacks)})


def test_a_share_or_a_count_of_the_scheduled_updates_is_attacked_reproducibly() -> None:
    scenario = _scenario({"name": "idlg", "sample": 0.2}, {"name": "rconv", "count": 3, "clients": [0, 1, 2, 3]},
                         {"name": "dlg"})
    clients = list(range(10))
    draws = [sampled_updates(scenario, r, clients) for r in range(1, 9)]
    assert all(set(d) == {0, 1} for d in draws)  # the third attack samples nothing: it sees every update
    assert all(len(d[0]) == 2 and len(d[1]) == 3 and d[1] <= {0, 1, 2, 3} for d in draws)
    assert len({frozenset(d[0]) for d in draws}) > 1  # a new draw every round
    assert draws == [sampled_updates(scenario, r, clients) for r in range(1, 9)]  # reproducible
    other_seed = _scenario({"name": "idlg", "sample": 0.2}, seed=4)
    assert [sampled_updates(other_seed, r, clients)[0] for r in range(1, 9)] != [d[0] for d in draws]


def test_a_sample_never_exceeds_the_updates_there_are() -> None:
    scenario = _scenario({"name": "idlg", "count": 5})
    assert sampled_updates(scenario, 1, [2, 7]) == {0: {2, 7}}
    assert sampled_updates(scenario, 1, []) == {0: set()}


def test_sample_and_count_together_are_one_line() -> None:
    with pytest.raises(UserError, match="sample") as error:
        _scenario({"name": "idlg", "sample": 0.5, "count": 2})
    assert "\n" not in str(error.value)
