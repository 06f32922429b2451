"""The one-run DP audit inside a run: canaries join the shards before training, audit.csv and the frontier get the
lower bound, and canaries the data cannot hold are refused before anything is written."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from fedleak.drivers.cli.main import main
from fedleak.drivers.scenarios import parse_scenario
from fedleak.federated_data import FederatedData


def _scenario(**audit) -> dict:
    return {
        "name": "audited", "seed": 3, "data": {"dataset": "mnist", "eval_fraction": 0.05},  # 250 held out
        "clients": {"count": 2, "partition": {"kind": "sizes", "sizes": [200, 60]}},
        "training": {"rounds": 2, "update": "epochs", "batch_size": 32, "lr": 0.1, "model": "lenet",
                     "activation": "relu", "init": "default"},
        "audit": {"canaries": 40, **audit},
    }


def _write(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_canaries_join_the_shards_before_training_and_leave_the_held_out_split() -> None:
    without = FederatedData(parse_scenario({k: v for k, v in _scenario().items() if k != "audit"}))
    data = FederatedData(parse_scenario(_scenario()))
    assert sorted(data.canaries) == [0, 1]
    for client, canaries in data.canaries.items():
        inserted, labels = canaries.inserted()
        assert 0 < len(inserted) < 40  # each with probability ½
        np.testing.assert_array_equal(data.shards[client], np.concatenate([without.shards[client], inserted]))
        _, trained_labels = data.get_training(inserted)
        _, true_labels = data.get(inserted)
        np.testing.assert_array_equal(trained_labels.numpy(), labels)
        assert (trained_labels != true_labels).all()  # mislabelled
        assert not np.isin(canaries.indices, data.eval_indices).any()  # drawn canaries leave the held-out split
    assert len(data.eval_indices) == len(without.eval_indices) - 80
    _, shard_labels = data.get_training(without.shards[0])
    np.testing.assert_array_equal(shard_labels.numpy(), data.get(without.shards[0])[1].numpy())


@pytest.mark.parametrize(("audit", "client", "words"), [
    ({"canaries": 200}, None, "need 400 held-out images, the pool has 250"),  # 2 clients × 200 > 250
    ({"canaries": 61, "clients": [1]}, None, "client 1's shard of 60 images"),
])
def test_more_canaries_than_the_data_holds_is_one_line_exit_2_nothing_written(tmp_path, capsys, audit, client,
                                                                              words) -> None:
    raw = _scenario()
    raw["audit"] = audit
    out = tmp_path / "out"
    assert main(["simulate", str(_write(tmp_path, raw)), "--out", str(out)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "→" not in line]  # progress
    assert len(err) == 1 and "audit.canaries" in err[0] and words in err[0], err
    assert not out.exists()


def test_an_audit_round_past_the_last_is_refused(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["simulate", str(_write(tmp_path, _scenario(round=3))), "--out", str(out)]) == 2
    assert "audit.round" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_an_audited_federation_writes_the_lower_bound_per_client_and_per_arm(tmp_path) -> None:
    raw = _scenario()
    raw["arms"] = [{"name": "none", "defense": {"kind": "none"}},
                   {"name": "dp_sgd", "defense": {"kind": "dp_sgd", "max_grad_norm": 1.0, "noise_multiplier": 1.0,
                                                  "delta": 1.0e-5}}]
    raw["executor"] = {"kind": "local"}
    out = tmp_path / "out"
    assert main(["simulate", str(_write(tmp_path, raw)), "--out", str(out)]) == 0
    worst = {}
    for arm in ("none", "dp_sgd"):
        with (out / "arms" / arm / "audit.csv").open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert sorted(int(r["client"]) for r in rows) == [0, 1]
        for row in rows:
            assert row["status"] == "ok", row["reason"]
            assert row["round"] == "2" and row["canaries"] == "40" and int(row["correct"]) <= int(row["guesses"])
            assert float(row["epsilon_lower"]) >= 0
        worst[arm] = max(float(r["epsilon_lower"]) for r in rows)
        if arm == "dp_sgd":
            assert all(float(r["claimed_epsilon"]) > 0 and "DP-SGD" in r["guarantee"] for r in rows)
    with (out / "frontier.csv").open(newline="") as handle:
        frontier = {r["arm"]: r for r in csv.DictReader(handle)}
    for arm, bound in worst.items():
        assert math.isclose(float(frontier[arm]["audit_epsilon_lower"]), bound, rel_tol=1e-6)
    assert (out / "figures" / "audit.png").is_file()
