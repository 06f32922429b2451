"""Membership inside a run: every scheduled update gets rows, the attack sees no membership, bad input is refused."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from fedleak.attacks.membership import MEMBERSHIP_ATTACKS, MembershipAttack, register_membership_attack
from fedleak.drivers.cli.main import main
from fedleak.drivers.scenarios import load_scenario, parse_scenario
from fedleak.errors import UserError
from fedleak.federated_data import FederatedData
from fedleak.observe import observe
from fedleak.server.membership import MembershipWatch
from fedleak.training import local_steps_update
from fedleak.types import ScoringContext, ThreatModel

ROOT = Path(__file__).resolve().parents[1]
SEEN: list[dict] = []

if "test_recorder" not in MEMBERSHIP_ATTACKS:

    @register_membership_attack("test_recorder")
    class Recorder(MembershipAttack):
        """Records what it was given; scores each candidate by its mean pixel (a blind, honest score)."""

        paper = "none (test plumbing)"

        def score(self, observation, images, labels):
            SEEN.append({"observation": observation, "images": images.clone(), "labels": labels.clone()})
            return images.mean(dim=(1, 2, 3)).double()


def _scenario(**membership) -> dict:
    return {
        "name": "member", "seed": 2, "data": {"dataset": "mnist", "eval_fraction": 0.05},
        "clients": {"count": 2, "partition": {"kind": "sizes", "sizes": [400, 30]}},
        "training": {"rounds": 2, "update": "epochs", "batch_size": 32, "lr": 0.1, "model": "lenet",
                     "activation": "relu", "init": "default"},
        "membership": {"attacks": ["test_recorder", "loss_difference"], **membership},
    }


def _context(indices: np.ndarray, client: int = 0) -> ScoringContext:
    return ScoringContext(round=1, client=client, indices=tuple(int(i) for i in indices), batch_size=32,
                          local_steps=13, lr=0.1, update_kind="epochs", local_epochs=1)


def test_the_attack_gets_the_update_and_shuffled_records_never_membership() -> None:
    scenario = parse_scenario(_scenario())
    data = FederatedData(scenario)
    shard = data.shards[0]
    spec = data.model_spec()
    model = spec.build()
    x, y = data.get(shard[:64])
    update = {**model.state_dict(), **local_steps_update(model, x, y, steps=2, lr=0.1)}
    obs = observe(spec, model.state_dict(), update, "epochs", ThreatModel(), metadata={"round": 1, "client": 0})
    watch = MembershipWatch(scenario, data.get, data.eval_indices)
    SEEN.clear()
    rows = watch.run(obs, _context(shard))
    pool = len(data.eval_indices)  # 5 % of 5000 = 250, fewer than the 400 records trained on
    assert [r.attack for r in rows] == ["test_recorder", "loss_difference"]
    for row in rows:
        assert row.status == "ok", row.reason
        assert (row.trained, row.pool, row.members, row.non_members) == (400, pool, pool, pool)
        assert 0 <= row.auc_low <= row.auc <= row.auc_high <= 1 and row.true_positives_at_1pct_fpr is not None
        assert "not knowing which are which" in row.threat
    seen = SEEN[0]
    assert seen["observation"] is obs and set(seen) == {"observation", "images", "labels"}
    # The records handed over are the candidate set's, in its shuffled order: members and non-members interleave.
    from fedleak.data.candidates import candidate_set

    candidates = candidate_set(shard, data.eval_indices, scenario.seed, 1, 0)
    images, labels = data.get(candidates.indices)
    assert torch.equal(seen["images"], images) and torch.equal(seen["labels"], labels)
    first_half = candidates.is_member[:pool].mean()
    assert 0.3 < first_half < 0.7


def test_a_crashing_attack_is_a_failed_row() -> None:
    scenario = parse_scenario(_scenario())
    data = FederatedData(scenario)
    spec = data.model_spec()
    model = spec.build()
    # A gradient update without the granted lr: loss difference cannot take the client's step and says so.
    obs = observe(spec, model.state_dict(), {k: torch.zeros_like(v) for k, v in model.named_parameters()},
                  "gradient", ThreatModel(local_hparams_known=False), metadata={"lr": 0.1})
    rows = MembershipWatch(scenario, data.get, data.eval_indices).run(obs, _context(data.shards[1], client=1))
    failed = [r for r in rows if r.attack == "loss_difference"][0]
    assert failed.status == "failed" and "not granted" in failed.reason and failed.auc is None


def _write(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_an_empty_held_out_split_is_one_line_exit_2_nothing_written(tmp_path, capsys) -> None:
    raw = _scenario()
    raw["data"]["eval_fraction"] = 0.0
    out = tmp_path / "out"
    assert main(["simulate", str(_write(tmp_path, raw)), "--out", str(out)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and "membership" in err[0] and "data.eval_fraction" in err[0]
    assert not out.exists()


def test_more_members_than_held_out_images_names_the_field(tmp_path, capsys) -> None:
    raw = _scenario(max_members=300)  # the held-out split has 250
    raw["arms"] = [{"name": "none", "defense": {"kind": "none"}}]
    out = tmp_path / "out"
    assert main(["simulate", str(_write(tmp_path, raw)), "--out", str(out)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and "membership.max_members" in err[0] and "250" in err[0]
    assert not out.exists()


def test_a_model_without_per_example_gradients_is_refused_at_validation(tmp_path) -> None:
    raw = _scenario()
    raw["data"] = {"dataset": "cifar10", "eval_fraction": 0.2}
    raw["training"]["model"] = "resnet18"
    raw["training"].pop("activation")
    with pytest.raises(UserError, match=r"membership: per-example gradients of model 'resnet18'.*BatchNorm"):
        load_scenario(_write(tmp_path, raw))


def test_an_unknown_membership_attack_names_its_entry(tmp_path) -> None:
    raw = _scenario()
    raw["membership"]["attacks"] = ["loss_difference", "nope"]
    with pytest.raises(UserError, match=r"membership.attacks\[1\]: unknown membership attack 'nope'"):
        load_scenario(_write(tmp_path, raw))


@pytest.mark.slow
def test_every_client_of_every_scheduled_round_has_a_membership_figure(tmp_path, tmp_path_factory) -> None:
    from fedleak.drivers.simulation import simulate

    raw = _scenario(rounds=[1, 3], attacks=["gradient_alignment", "loss_difference"])
    raw["training"]["rounds"] = 3
    raw["attacks"] = [{"name": "rconv", "rounds": [1], "max_images": 8}]
    scenario = parse_scenario(raw)
    run_dir = tmp_path / "run"
    result = simulate(scenario, run_dir=run_dir, executor="local", progress=False,
                      ray_temp_dir=tmp_path_factory.mktemp("ray"))
    assert result.ok, result.problems
    with (run_dir / "membership.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    keys = sorted((int(r["round"]), int(r["client"]), r["attack"]) for r in rows)
    assert keys == [(r, c, a) for r in (1, 3) for c in (0, 1) for a in ("gradient_alignment", "loss_difference")]
    for row in rows:
        assert row["status"] == "ok", row["reason"]
        members = min(int(row["trained"]), int(row["pool"]))
        assert int(row["members"]) == int(row["non_members"]) == members
        assert 0 <= float(row["auc_low"]) <= float(row["auc"]) <= float(row["auc_high"]) <= 1
    with (run_dir / "leakage.csv").open(newline="") as handle:
        leakage = list(csv.DictReader(handle))
    # Reconstruction keeps its cap: the 400-image update is skipped there, and has its membership rows all the same.
    assert {r["client"]: r["status"] for r in leakage} == {"0": "skipped", "1": "skipped"}
