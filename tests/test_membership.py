"""Membership inference: the attacks score blind, the scorer alone knows membership, the numbers are checkable."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from fedleak.attacks.membership import (
    list_membership_attacks,
    per_example_gradients,
    per_example_gradients_problem,
    score_candidates,
)
from fedleak.data import load_bundled
from fedleak.data.candidates import candidate_set
from fedleak.metrics.membership import clopper_pearson, score_membership, tpr_at_fpr
from fedleak.observe import observe
from fedleak.training import batch_gradient, local_steps_update, loss_of
from fedleak.types import ModelSpec, ThreatModel

ROOT = Path(__file__).resolve().parents[1]
SPEC = ModelSpec("lenet", in_channels=1, image_size=28, num_classes=10, activation="relu")


MNIST = load_bundled("mnist", "train", None)


def setting(kind: str, members: int = 16, seed: int = 0):
    """An update on ``members`` MNIST images and as many other MNIST images as non-members (members first)."""
    torch.manual_seed(seed)
    model = SPEC.build()
    for module in model.modules():  # PyTorch's default initialisation, as the training scenarios use
        if module is not model and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    pick = np.random.default_rng(seed).choice(len(MNIST), size=2 * members, replace=False)
    images, labels = (torch.as_tensor(a) for a in MNIST.get(pick))
    images, labels = images.float(), labels.long()
    x, y = images[:members], labels[:members]
    meta = {"round": 1, "client": 0, "lr": 0.05, "local_steps": 20}
    if kind == "gradient":
        update = batch_gradient(model, x, y)
    else:
        update = local_steps_update(model, x, y, steps=20, lr=0.05)
    obs = observe(SPEC, model.state_dict(), update, kind, ThreatModel(), metadata=meta)
    truth = np.r_[np.ones(members, bool), np.zeros(members, bool)]
    return obs, images, labels, truth


def test_per_example_gradients_match_one_backward_pass_each() -> None:
    torch.manual_seed(1)
    model = SPEC.build()
    images, labels = torch.rand(5, 1, 28, 28), torch.arange(5)
    weights = dict(model.state_dict())
    vmapped = per_example_gradients(model, weights, images, labels)
    for i in range(5):
        model.zero_grad()
        loss_of(model)(model(images[i:i + 1]), labels[i:i + 1]).backward()
        flat = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        torch.testing.assert_close(vmapped[i], flat, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("attack", ["gradient_alignment", "loss_difference"])
@pytest.mark.parametrize("kind", ["gradient", "local_steps"])
def test_attacks_separate_members_of_a_small_update(attack: str, kind: str) -> None:
    # Sixteen images: each member's own gradient is a large part of the update, so members outscore non-members
    # beyond chance (one-sided Mann-Whitney test at 1 %); chunks of 5 exercise the chunking.
    from scipy.stats import mannwhitneyu

    obs, images, labels, truth = setting(kind)
    scores = score_candidates(obs, images, labels, attack=attack, chunk=5)
    assert scores.shape == (32,) and np.isfinite(scores).all()
    assert mannwhitneyu(scores[truth], scores[~truth], alternative="greater").pvalue < 0.01
    assert score_membership(scores, truth).auc > 0.7


@pytest.mark.parametrize("attack", ["gradient_alignment", "loss_difference"])
def test_scores_follow_the_candidates_not_their_positions(attack: str) -> None:
    # The attack sees candidates, never membership: reordering them reorders the scores and changes nothing else.
    obs, images, labels, _ = setting("local_steps")
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(3))
    plain = score_candidates(obs, images, labels, attack=attack)
    shuffled = score_candidates(obs, images[order], labels[order], attack=attack)
    np.testing.assert_allclose(shuffled, plain[order.numpy()], rtol=1e-4, atol=1e-6)


def test_attack_code_imports_neither_data_nor_scoring() -> None:
    # Membership is known to the candidate builder (fedleak.data) and the scorer (fedleak.metrics) only.
    for name in ["membership", "gradient_alignment", "loss_difference"]:
        tree = ast.parse((ROOT / "attacks" / f"{name}.py").read_text())
        imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        banned = [m for m in imported if m.startswith(("fedleak.data", "fedleak.metrics", "flwr", "ray"))]
        assert not banned, f"attacks/{name}.py imports {banned}"


def test_both_attacks_are_registered_with_a_paper() -> None:
    from fedleak.attacks.membership import MEMBERSHIP_ATTACKS

    assert {"gradient_alignment", "loss_difference"} <= set(list_membership_attacks())
    assert all("arXiv" in MEMBERSHIP_ATTACKS.get(name).paper for name in ("gradient_alignment", "loss_difference"))


def test_loss_difference_on_a_gradient_needs_the_granted_lr() -> None:
    obs, images, labels, _ = setting("gradient")
    hidden = observe(SPEC, obs.global_weights, obs.update, "gradient",
                     ThreatModel(local_hparams_known=False), metadata={"lr": 0.05})
    with pytest.raises(ValueError, match="not granted"):
        score_candidates(hidden, images, labels, attack="loss_difference")


def test_batchnorm_models_have_no_per_example_gradient() -> None:
    resnet = ModelSpec("resnet18", 3, 32, 10).build()
    assert "BatchNorm" in (per_example_gradients_problem(resnet, 3, 32, 10) or "")
    assert per_example_gradients_problem(SPEC.build(), 1, 28, 10) is None


# -- the scorer ------------------------------------------------------------------------------------------------
def test_clopper_pearson_against_closed_forms() -> None:
    # 0 of n: upper = 1 − (α/2)^(1/n); n of n: lower = (α/2)^(1/n).
    low, high = clopper_pearson(0, 10)
    assert low == 0 and high == pytest.approx(1 - 0.025 ** (1 / 10), rel=1e-9)
    low, high = clopper_pearson(10, 10)
    assert high == 1 and low == pytest.approx(0.025 ** (1 / 10), rel=1e-9)


def test_auc_and_tpr_at_fpr_on_a_hand_case() -> None:
    # Members score 5..9; the non-members 0..3 and one at 7.5.
    scores = np.array([0, 1, 2, 3, 7.5, 5, 6, 7, 8, 9], dtype=float)
    truth = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1], dtype=bool)
    s = score_membership(scores, truth)
    # Pairs (member, non-member) won: every member beats 4 non-members; members 8 and 9 also beat 7.5 → 22 of 25.
    assert s.auc == pytest.approx(22 / 25)
    zero = tpr_at_fpr(scores, truth, 0.0)  # no false positive allowed: members above 7.5 only
    assert (zero.true_positives, zero.false_positives, zero.tpr) == (2, 0, 0.4)
    assert (zero.low, zero.high) == pytest.approx(clopper_pearson(2, 5))
    assert s.tpr(0.01).true_positives == 2  # 5 non-members: 1 % FPR admits none either
    assert s.auc_low < s.auc < s.auc_high <= 1


def test_chance_scores_give_an_auc_interval_around_one_half() -> None:
    rng = np.random.default_rng(0)
    truth = np.r_[np.ones(1000, bool), np.zeros(1000, bool)]
    s = score_membership(rng.normal(size=2000), truth)
    assert s.auc_low < 0.5 < s.auc_high or abs(s.auc - 0.5) < 0.05
    assert s.auc_high - s.auc_low < 0.08


# -- the candidate set -----------------------------------------------------------------------------------------
def test_candidates_are_balanced_disjoint_shuffled_and_reproducible() -> None:
    trained = np.repeat(np.arange(100, 1700), 2)  # two epochs over 1600 records
    held_out = np.arange(3000, 4000)
    c = candidate_set(trained, held_out, seed=0, server_round=3, client=1)
    assert (c.members, c.non_members, c.trained, c.pool) == (1000, 1000, 1600, 1000)
    assert set(c.indices[c.is_member]) <= set(trained) and set(c.indices[~c.is_member]) <= set(held_out)
    assert len(set(c.indices)) == 2000
    assert 0.3 < c.is_member[:1000].mean() < 0.7  # members are not listed first
    again = candidate_set(trained, held_out, seed=0, server_round=3, client=1)
    np.testing.assert_array_equal(again.indices, c.indices)
    other = candidate_set(trained, held_out, seed=0, server_round=4, client=1)
    assert not np.array_equal(other.indices, c.indices)
    small = candidate_set(np.arange(10), held_out, seed=0, server_round=1, client=0, max_members=4)
    assert (small.members, small.non_members) == (4, 4)
