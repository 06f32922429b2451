"""Privacy accounting against a second, independent accountant (Google's dp-accounting) and hand-computable cases.

Tolerances: the analytic Gaussian and its composition are exact formulas in both libraries (agreement to 1e-6);
dp-accounting's PLD accountant discretises the privacy-loss distribution (agreement to 1 %); both RDP accountants
convert RDP to (ε, δ) at the same orders, by slightly different conversions (agreement to 0.1 %).
"""

from __future__ import annotations

import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting import pld, rdp

from fedleak.clients.update import LocalTraining, privacy_spent, round_batches
from fedleak.defenses import DpSgdDefense, LocalDpDefense, NoDefense
from fedleak.participation import rounds_taken_part, sampled_clients
from fedleak.privacy import (
    SubsampledGaussian,
    calibrate_gaussian_sigma,
    dp_sgd_round,
    dp_sgd_spent,
    gaussian_delta,
    gaussian_epsilon,
    local_dp_spent,
    poisson_steps_per_epoch,
)

DELTA = 1e-5


@pytest.mark.parametrize("epsilon", [0.3, 1.0, 8.0, 50.0])
def test_calibrated_sigma_reproduces_epsilon_delta_and_matches_dp_accounting(epsilon: float) -> None:
    sigma = calibrate_gaussian_sigma(epsilon, DELTA, sensitivity=2.0)
    assert gaussian_delta(epsilon, 2.0 / sigma) == pytest.approx(DELTA, rel=1e-6)
    assert gaussian_epsilon(2.0 / sigma, DELTA) == pytest.approx(epsilon, rel=1e-6)
    assert sigma / 2.0 == pytest.approx(dp_accounting.get_sigma_gaussian(epsilon, DELTA), rel=1e-6)


def test_the_classical_bound_under_noises_at_large_epsilon() -> None:
    # sqrt(2 ln(1.25/δ))/ε is valid only for ε < 1: at ε = 50 it gives less noise than (50, δ)-DP needs.
    classical = math.sqrt(2 * math.log(1.25 / DELTA)) / 50.0
    assert classical < calibrate_gaussian_sigma(50.0, DELTA, 1.0)
    assert gaussian_epsilon(1.0 / classical, DELTA) > 50.0


@pytest.mark.parametrize("rounds", [1, 3, 10])
def test_local_dp_epsilon_composes_over_rounds_like_a_pld_accountant(rounds: int) -> None:
    defense = LocalDpDefense(kind="local_dp", clipping_norm=0.5, epsilon=2.0, delta=DELTA)
    plan = LocalTraining("epochs", 8, 1, 1, 0.1)
    spent = privacy_spent(defense, plan, shard_size=100, rounds=rounds)
    assert spent is not None and spent.unit == "update(replace-one)" and spent.delta == DELTA
    if rounds == 1:
        assert spent.epsilon == pytest.approx(2.0, rel=1e-6)  # one release: exactly the per-round (ε, δ)
    accountant = pld.PLDAccountant()
    accountant.compose(dp_accounting.GaussianDpEvent(dp_accounting.get_sigma_gaussian(2.0, DELTA)), rounds)
    assert spent.epsilon == pytest.approx(accountant.get_epsilon(DELTA), rel=0.01)


def _dp_accounting_rdp(mechanism: SubsampledGaussian, rounds: int) -> float:
    from opacus.accountants import RDPAccountant

    accountant = rdp.RdpAccountant(orders=RDPAccountant.DEFAULT_ALPHAS)
    event = dp_accounting.PoissonSampledDpEvent(mechanism.sample_rate,
                                                dp_accounting.GaussianDpEvent(mechanism.noise_multiplier))
    accountant.compose(event, mechanism.steps * rounds)
    return accountant.get_epsilon(DELTA)


@pytest.mark.parametrize("kind", ["gradient", "local_steps", "epochs"])
def test_dp_sgd_epsilon_matches_dp_accountings_rdp_accountant(kind: str) -> None:
    defense = DpSgdDefense(kind="dp_sgd", noise_multiplier=1.1, delta=DELTA)
    plan = LocalTraining(kind, batch_size=10, local_steps=4, local_epochs=2, lr=0.1)
    mechanism = dp_sgd_round(kind, 1.1, 10, 200, 4, 2)
    for rounds in (1, 5):
        spent = privacy_spent(defense, plan, shard_size=200, rounds=rounds)
        assert spent is not None and spent.unit == "record"
        assert spent.epsilon == pytest.approx(_dp_accounting_rdp(mechanism, rounds), rel=1e-3)


def test_an_epoch_round_is_e_times_one_over_q_poisson_steps() -> None:
    assert dp_sgd_round("epochs", 1.0, 10, 200, 1, 3) == SubsampledGaussian(1.0, 0.05, 3 * 20)
    assert poisson_steps_per_epoch(0.3) == 3


def test_k_steps_on_one_batch_are_one_release_at_sigma_over_root_k_not_k_subsampled_steps() -> None:
    once = dp_sgd_round("local_steps", 2.0, 10, 200, 4, 1)
    assert once == SubsampledGaussian(1.0, 0.05, 1)
    k_independent = SubsampledGaussian(2.0, 0.05, 4)
    assert dp_sgd_spent(once, 3, DELTA).epsilon > dp_sgd_spent(k_independent, 3, DELTA).epsilon
    # Without subsampling (q = 1) the two must agree: K Gaussian releases on the same data are one at σ/√K.
    assert dp_sgd_spent(SubsampledGaussian(1.0, 1.0, 1), 3, DELTA).epsilon == pytest.approx(
        dp_sgd_spent(SubsampledGaussian(2.0, 1.0, 4), 3, DELTA).epsilon, rel=1e-9)


def test_no_defense_spends_nothing_and_no_noise_is_infinite() -> None:
    plan = LocalTraining("gradient", 1, 1, 1, 0.1)
    assert privacy_spent(NoDefense(), plan, 10, 3) is None
    assert math.isinf(privacy_spent(DpSgdDefense(kind="dp_sgd", noise_multiplier=0.0), plan, 10, 1).epsilon)
    with pytest.raises(ValueError):
        local_dp_spent(1.0, 1.0, DELTA, rounds=0)


def test_a_sampled_clients_epsilon_rises_only_in_the_rounds_it_takes_part_in() -> None:
    count, per_round, seed = 10, 3, 4
    draws = {r: sampled_clients(count, per_round, seed, r) for r in range(1, 13)}
    assert all(len(d) == per_round and len(set(d)) == per_round for d in draws.values())
    assert draws == {r: sampled_clients(count, per_round, seed, r) for r in range(1, 13)}  # reproducible
    defense = DpSgdDefense(kind="dp_sgd", noise_multiplier=1.0)
    plan = LocalTraining("gradient", 5, 1, 1, 0.1)
    for client in range(count):
        taken = rounds_taken_part(count, per_round, seed, client, 12)
        assert taken == [r for r in range(1, 13) if client in draws[r]]
        epsilons = [privacy_spent(defense, plan, 50, k).epsilon for k in range(1, len(taken) + 1)]
        assert all(a < b for a, b in zip(epsilons, epsilons[1:], strict=False))


def test_poisson_batches_have_the_sampling_rate_and_are_reproducible() -> None:
    shard = np.arange(1000, 1400)
    plan = LocalTraining("epochs", batch_size=20, local_steps=1, local_epochs=2, lr=0.1)
    batches = round_batches(shard, plan, seed=0, client=3, server_round=2, defense=DpSgdDefense())
    assert len(batches) == 2 * 20  # E · int(1/q), q = 20/400
    sizes = np.array([len(b) for b in batches])
    assert abs(sizes.mean() - 20) < 3 and sizes.std() > 0  # sizes vary around q·n
    assert all(set(b) <= set(shard) for b in batches)
    again = round_batches(shard, plan, seed=0, client=3, server_round=2, defense=DpSgdDefense())
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))


@pytest.mark.parametrize(("neighbours", "scale", "unit"), [("replace_one", 2.0, "update(replace-one)"),
                                                           ("zero_update", 1.0, "update(zero-update)")])
def test_local_dp_noise_and_epsilon_follow_the_stated_neighbour_relation(neighbours, scale, unit) -> None:
    defense = LocalDpDefense(kind="local_dp", clipping_norm=0.5, epsilon=2.0, delta=DELTA, neighbours=neighbours)
    # The noise is calibrated to the relation's sensitivity: 2C for any two clipped updates, C for the zero update.
    assert defense.noise_std() == pytest.approx(calibrate_gaussian_sigma(2.0, DELTA, scale * 0.5), rel=1e-9)
    plan = LocalTraining("gradient", 8, 1, 1, 0.1)
    for rounds in (1, 2, 5):
        spent = defense.spent(plan, 100, rounds)
        accountant = pld.PLDAccountant()
        event = dp_accounting.GaussianDpEvent(defense.noise_std() / (scale * 0.5))
        accountant.compose(event, rounds)
        assert spent.unit == unit
        assert spent.epsilon == pytest.approx(accountant.get_epsilon(DELTA), rel=0.01)


def test_noise_calibrated_for_the_zero_update_is_accounted_honestly_under_replace_one() -> None:
    # Flower's LocalDpMod asks its user for the sensitivity; with sensitivity = C (the zero-update neighbour) and
    # ε = 2 per round, any two clipped updates are told apart at ε 4.39 / 6.60 after 1 / 2 rounds, not 2.0 / 2.95.
    plan = LocalTraining("gradient", 8, 1, 1, 0.1)
    weak = LocalDpDefense(kind="local_dp", clipping_norm=1.0, epsilon=2.0, delta=DELTA, sensitivity=1.0)
    zero = LocalDpDefense(kind="local_dp", clipping_norm=1.0, epsilon=2.0, delta=DELTA, neighbours="zero_update")
    assert weak.noise_std() == pytest.approx(zero.noise_std(), rel=1e-12)  # the same noise
    assert [round(weak.spent(plan, 10, r).epsilon, 2) for r in (1, 2)] == [4.39, 6.60]
    assert [round(zero.spent(plan, 10, r).epsilon, 2) for r in (1, 2)] == [2.0, 2.95]
    for rounds in (1, 2):
        accountant = pld.PLDAccountant()
        accountant.compose(dp_accounting.GaussianDpEvent(weak.noise_std() / 2.0), rounds)
        assert weak.spent(plan, 10, rounds).epsilon == pytest.approx(accountant.get_epsilon(DELTA), rel=0.01)
