"""A new defense is one file: this one registers a toy defense that acts during training and runs it through a
small federation on Flower's simulation engine (clients in Ray workers), with nothing else in fedleak changed.

The toy is signSGD (Bernstein et al. 2018, "signSGD: Compressed Optimisation for Non-Convex Problems",
arXiv 1802.04434) used as a defense: every step follows the sign of the batch gradient, so a FedSGD client sends
``scale · sign(gradient)``. It is a plumbing test, not a claim that signSGD protects anything.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Literal

import pytest
import torch
from torch import nn

from fedleak.attacks import Attack, register_attack
from fedleak.defenses import DEFENSES, Defense, register_defense
from fedleak.drivers.scenarios import parse_scenario
from fedleak.errors import UserError
from fedleak.training import LocalTraining, functional_gradient
from fedleak.types import Observation, Reconstruction

#: (round, client) -> the distinct magnitudes of the update the server observed (in-process attack executor).
OBSERVED: dict[tuple[int, int], set[float]] = {}

if "test_toy_sign" not in DEFENSES:  # a worker imports this module to register the defense; never twice

    @register_defense
    class ToySignDefense(Defense):
        """Each training step moves by ``scale · sign(gradient)``; a FedSGD reply is that step direction."""

        kind: Literal["test_toy_sign"] = "test_toy_sign"
        scale: float = 1.0

        def train(self, model: nn.Module, batches, plan: LocalTraining, generator: torch.Generator,
                  shard_size: int) -> dict[str, torch.Tensor]:
            weights = {k: v.detach().clone() for k, v in model.named_parameters()}
            if plan.kind == "gradient":
                grads = functional_gradient(model, weights, *batches[0])
                return {k: self.scale * torch.sign(g) for k, g in grads.items()}
            steps = plan.local_steps if plan.kind == "local_steps" else 1
            for images, labels in batches:
                for _ in range(steps):
                    grads = functional_gradient(model, weights, images, labels)
                    weights = {k: weights[k] - plan.lr * self.scale * torch.sign(grads[k]) for k in weights}
            return {name: weights.get(name, value).detach().clone() for name, value in model.state_dict().items()}

    @register_attack("test_toy_probe")
    class ProbeAttack(Attack):
        """Records the magnitudes the server saw and returns noise (scores low, as it should)."""

        def reconstruct(self, observation: Observation) -> Reconstruction:
            flat = torch.cat([v.reshape(-1) for v in observation.gradient().values()])
            where = (observation.metadata["round"], observation.metadata["client"])
            OBSERVED[where] = {float(m) for m in flat.abs().unique()}
            spec, b = observation.model, observation.batch_size or 1
            g = torch.Generator().manual_seed(self.seed)
            return Reconstruction(images=torch.rand(b, spec.in_channels, spec.image_size, spec.image_size,
                                                    generator=g))


def test_the_toy_defense_is_a_scenario_kind_with_its_settings() -> None:
    scenario = parse_scenario({"data": {"dataset": "mnist"}, "clients": {"count": 2},
                               "training": {"defense": {"kind": "test_toy_sign", "scale": 0.5}}})
    assert isinstance(scenario.training.defense, DEFENSES.get("test_toy_sign"))
    assert scenario.training.defense.label() == "test_toy_sign(scale=0.5)"
    with pytest.raises(UserError, match="training.defense.scale"):
        parse_scenario({"data": {"dataset": "mnist"}, "clients": {"count": 2},
                        "training": {"defense": {"kind": "test_toy_sign", "scale": "big"}}})


@pytest.mark.slow
def test_a_toy_during_training_defense_runs_through_a_simulated_federation(tmp_path, tmp_path_factory,
                                                                            monkeypatch):
    from fedleak.drivers.simulation import simulate

    # The Ray workers import this module (the ClientApp names it) from the tests folder.
    here = str(Path(__file__).resolve().parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p))
    scenario = parse_scenario({
        "name": "toy", "data": {"dataset": "mnist", "eval_fraction": 0.1},
        "clients": {"count": 2, "overrides": [{"client": 0, "defense": {"kind": "test_toy_sign", "scale": 0.5}}]},
        "training": {"rounds": 1, "batch_size": 2, "lr": 0.1},
        "attacks": [{"name": "test_toy_probe"}],
    })
    OBSERVED.clear()
    run_dir = tmp_path / "run"
    result = simulate(scenario, run_dir=run_dir, executor="local", progress=False,
                      ray_temp_dir=tmp_path_factory.mktemp("ray"))
    assert result.ok, result.problems

    with (run_dir / "leakage.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {int(r["client"]): r["defense"] for r in rows} == {0: "test_toy_sign(scale=0.5)", 1: "none"}
    # The toy trained client 0 inside its Ray worker: the server saw only ±0.5 (and 0); client 1's plain gradient
    # has many magnitudes.
    assert OBSERVED[(1, 0)] <= {0.0, 0.5} and 0.5 in OBSERVED[(1, 0)]
    assert len(OBSERVED[(1, 1)]) > 2
