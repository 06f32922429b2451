"""The bound beside the attack: measured re-identification rates per client and strongest attack, each DP client's
ReRo bound, and the flag when a rate lies above its bound beyond chance."""

from __future__ import annotations

import math

import pytest

from fedleak.config.schema import TrainingConfig
from fedleak.privacy import dp_sgd_round
from fedleak.report.bounds import ClientBound, arm_bounds, strongest_rates, worst_client
from fedleak.rero import dp_sgd_rero, local_dp_rero

ROWS = [
    {"round": 1, "client": 0, "attack": "idlg", "batch_size": 2, "status": "ok", "reidentified_per_image": "1 0"},
    {"round": 2, "client": 0, "attack": "idlg", "batch_size": 2, "status": "failed", "reidentified_per_image": ""},
    {"round": 1, "client": 0, "attack": "rconv", "batch_size": 2, "status": "ok", "reidentified_per_image": "1 1"},
    {"round": 1, "client": 1, "attack": "idlg", "batch_size": 1, "status": "ok", "reidentified_per_image": "-"},
    {"round": 1, "client": 1, "attack": "rconv", "batch_size": 1, "status": "ok", "reidentified_per_image": "0"},
    {"round": 1, "client": 2, "attack": "idlg", "batch_size": 64, "status": "skipped", "reidentified_per_image": ""},
]


def test_strongest_rates_by_hand():
    # client 0: idlg 1 of 4 (its failed update's two images count as misses), rconv 2 of 2 → rconv, 1.0;
    # client 1: idlg's only answer is "-" (not computed): not a rate; rconv 0 of 1; client 2 was never attacked.
    assert strongest_rates(ROWS) == {0: (1.0, 2, "rconv"), 1: (0.0, 1, "rconv")}


def test_violation_needs_more_than_chance():
    assert ClientBound(0, 0.01, 1.0, 20, "rconv").violated  # 20 of 20 against a bound of 1 %
    assert not ClientBound(0, 0.4, 1.0, 2, "rconv").violated  # 2 of 2: lower limit 22 %, under 40 %
    assert not ClientBound(0, 0.5, 0.55, 100, "rconv").violated  # 55 of 100: lower limit 46 %
    assert ClientBound(0, 0.5, 0.6, 100, "rconv").violated  # 60 of 100: lower limit 51.3 %
    assert worst_client([ClientBound(0, 0.3, 0.5, 4, "a"), ClientBound(1, 0.2, 0.5, 4, "b")]).client == 1


def test_arm_bounds_read_the_clients_mechanism():
    scenario = {
        "name": "b", "seed": 0,
        "data": {"dataset": "mnist", "source": "bundled", "eval_fraction": 0.2},
        "clients": {"count": 2, "partition": {"kind": "sizes", "sizes": [100, 300]}},
        "training": {"rounds": 3, "update": "epochs", "local_epochs": 1, "batch_size": 10, "model": "lenet",
                     "defense": {"kind": "dp_sgd", "noise_multiplier": 1.0, "max_grad_norm": 1.0}},
    }
    bounds = arm_bounds(scenario, ROWS[:5])  # rows without gallery_size: every bundled MNIST image is the gallery
    assert [b.client for b in bounds] == [0, 1]
    kappa = 1 / 5000
    expected = dp_sgd_rero(dp_sgd_round("epochs", 1.0, 10, 100, 1, 1), rounds=3, kappa=kappa)
    assert bounds[0].rero_bound == pytest.approx(expected)
    assert bounds[1].rero_bound < bounds[0].rero_bound  # a larger shard: a smaller sampling rate
    assert 0 < expected < 1 and not math.isnan(expected)
    stated = arm_bounds(scenario, [dict(r, gallery_size=999) for r in ROWS[:5]])  # gallery + the target: 1000
    assert stated[0].rero_bound == pytest.approx(dp_sgd_rero(dp_sgd_round("epochs", 1.0, 10, 100, 1, 1), 3, 1 / 1000))
    local = dict(scenario, training=dict(scenario["training"], defense={"kind": "local_dp", "clipping_norm": 1.0,
                                                                           "epsilon": 2.0, "delta": 1e-5}))
    sigma = TrainingConfig.model_validate(local["training"]).defense.noise_std()  # the noise it adds per round
    assert arm_bounds(local, ROWS[:5])[0].rero_bound == pytest.approx(local_dp_rero(sigma, 1.0, 3, kappa))
    assert arm_bounds({"training": {"defense": {"kind": "dp_sgd"}}}, ROWS) == []  # no rebuildable scenario
