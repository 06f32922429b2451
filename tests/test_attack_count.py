"""Every registered attack that is granted the number of images returns at most that many (issue 19, item 2).

The scorer scores every image an attack returns; an attack that knows B and returns more would make its extra
outputs count against it (see tests/test_null_attack.py), so the contract is checked here for the whole registry.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from victims import gradient_observation

from fedleak.attacks import ATTACKS, get_attack, list_attacks
from fedleak.clients.update import LocalTraining
from fedleak.clients.victim import victim_observation
from fedleak.config.schema import DataConfig
from fedleak.data import load_images
from fedleak.types import ModelSpec, Observation, ThreatModel

#: Per attack: a model it applies to, its update kind, and settings small enough for a contract test.
CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "dlg": ("lenet", "gradient", {"iterations": 2}),
    "idlg": ("lenet", "gradient", {"iterations": 2}),
    "inverting_gradients": ("lenet", "gradient", {"iterations": 2, "restarts": 1}),
    "fedavg": ("lenet", "epochs", {"iterations": 2}),
    "hybrid": ("lenet", "gradient", {"image_iterations": 2}),
    "rconv": ("lenet", "gradient", {}),
    "rgap": ("cnn6", "gradient", {}),
    "cpa": ("mlp", "gradient", {}),
    "linear": ("mlp", "gradient", {}),
    "spear": ("mlp", "gradient", {}),
}


def shipped_attacks() -> set[str]:
    """The attacks fedleak ships; other test files register stand-ins (``test_*``) beside them while pytest runs."""
    return {name for name in list_attacks() if ATTACKS.get(name).__module__.startswith("fedleak.attacks.")}


def test_every_registered_attack_has_a_case():
    assert set(CASES) == shipped_attacks()


def _observation(model: str, kind: str, batch: int) -> Observation:
    image_set = load_images(DataConfig(dataset="mnist", split="test"))
    images, labels = image_set.get(list(range(batch)))
    if kind == "gradient":
        return gradient_observation(model, images, labels, "sigmoid" if model == "lenet" else None)
    spec = ModelSpec(model, 1, images.shape[-1], image_set.num_classes, "sigmoid")
    torch.manual_seed(0)
    plan = LocalTraining("epochs", 2, 1, 1, 0.01)
    threat = ThreatModel(local_hparams_known=True, batch_size_known=True)
    return victim_observation(spec, spec.build(), images, labels, plan, seed=0, threat=threat)[0]


@pytest.mark.parametrize("name", sorted(CASES))
def test_an_attack_that_knows_b_returns_at_most_b_images(name: str):
    model, kind, params = CASES[name]
    batch = 4
    observation = _observation(model, kind, batch)
    assert observation.metadata.get("batch_size") or observation.metadata.get("num_examples")
    result = get_attack(name, seed=0, **params)(observation)
    if result.status == "ok" and result.images is not None:
        assert 1 <= len(result.images) <= batch, f"{name} returned {len(result.images)} images for B = {batch}"
    else:  # a refusal is allowed (e.g. an analytic attack's precondition); it must say why
        assert result.reason
