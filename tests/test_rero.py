"""ReRo bounds (Balle, Cherubin & Hayes 2022; Hayes, Mahloujifar & Balle 2023, arXiv 2302.07225) against cases
computed independently."""

from __future__ import annotations

import math

import pytest
from scipy.stats import norm

from fedleak.privacy import SubsampledGaussian
from fedleak.rero import dp_sgd_rero, gaussian_rero, local_dp_rero, numerical_rero


def test_gaussian_closed_form_and_limits():
    # μ-GDP: 1 − f(κ) = 1 − Φ(Φ⁻¹(1 − κ) − μ); at μ = 0 no test beats the prior.
    kappa, mu = 1 / 1000, 2.0
    assert gaussian_rero(mu, kappa) == pytest.approx(1 - norm.cdf(norm.ppf(1 - kappa) - mu), rel=1e-12)
    assert gaussian_rero(0.0, kappa) == pytest.approx(kappa)
    assert gaussian_rero(math.inf, kappa) == 1.0


def test_numerical_profile_matches_gaussian_without_subsampling():
    # Sample rate 1: T releases at noise σ are one Gaussian of μ = √T/σ; the numerical path must agree from above.
    for sigma, steps, kappa in [(1.0, 1, 0.01), (2.0, 4, 0.001)]:
        exact = gaussian_rero(math.sqrt(steps) / sigma, kappa)
        bound = numerical_rero(sigma, 1.0, steps, kappa)
        assert exact - 1e-9 <= bound <= exact + 1e-3


def test_numerical_profile_matches_one_subsampled_step():
    # One Poisson-subsampled step: P = N(0, σ²), Q = (1 − q)·N(0, σ²) + q·N(1, σ²). The likelihood ratio grows with
    # x, so the best test of size κ rejects above t = σ·Φ⁻¹(1 − κ) and Q's mass there is (1 − q)·κ + q·Φ((1 − t)/σ).
    for sigma, rate, kappa in [(1.0, 0.1, 0.01), (0.8, 0.05, 0.001)]:
        threshold = sigma * norm.ppf(1 - kappa)
        exact = (1 - rate) * kappa + rate * norm.sf((threshold - 1) / sigma)
        bound = numerical_rero(sigma, rate, 1, kappa)
        assert exact - 1e-9 <= bound <= exact + 1e-3


def test_dp_sgd_and_local_dp_wiring():
    kappa = 1 / 500
    full_batch = SubsampledGaussian(noise_multiplier=2.0, sample_rate=1.0, steps=3)
    assert dp_sgd_rero(full_batch, rounds=3, kappa=kappa) == pytest.approx(gaussian_rero(3 / 2.0, kappa))
    assert dp_sgd_rero(SubsampledGaussian(0.0, 0.1, 5), rounds=1, kappa=kappa) == 1.0
    # more noise or fewer rounds: a smaller bound
    assert dp_sgd_rero(SubsampledGaussian(1.0, 0.05, 20), 2, kappa) < dp_sgd_rero(SubsampledGaussian(0.7, 0.05, 20), 2,
                                                                                 kappa)
    # a record moves the clipped update by up to twice the clipping norm
    assert local_dp_rero(4.0, 1.0, 4, kappa) == pytest.approx(gaussian_rero(2 * 1.0 * 2 / 4.0, kappa))
