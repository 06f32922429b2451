"""Reconstruction robustness (ReRo): how likely any attack is to reconstruct a record, given the mechanism.

Balle, Cherubin & Hayes, "Reconstructing Training Data with Informed Adversaries", S&P 2022 (arXiv 2201.04845):
a mechanism is (η, γ)-ReRo for a prior π over the target record when no reconstruction attack — even one that knows
every other record — lands within η of the target with probability above γ. Hayes, Mahloujifar & Balle, "Bounding
Training Data Reconstruction in DP-SGD", NeurIPS 2023 (arXiv 2302.07225), Theorem 2: with κ the prior's largest mass
on one η-ball (here: a uniform guess over a gallery of N images, κ = 1/N), the success is at most 1 − f(κ), where f
is the trade-off curve between the mechanism's outputs without and with the target.

We compute 1 − f(κ) from the mechanism's full privacy profile δ(ε) of that pair, not from one (ε, δ):
sup{Q(E) : P(E) ≤ κ} = inf over ε of κ·eᵉ + δ(ε) (Neyman–Pearson, as a convex conjugate), which is exact for a
profile known on all ε. For a Gaussian of μ = Δ/σ the profile is closed-form and the bound is Φ(Φ⁻¹(κ) + μ) (the
trade-off curve of μ-GDP, Dong, Roth & Su 2019, arXiv 1905.02383). DP-SGD's Poisson-subsampled Gaussian, composed
over its steps, takes Opacus' numerical privacy-loss distribution (Gopi, Lee & Wutschitz 2021, arXiv 2106.02848);
its discretisation error is added on the safe side. Hayes et al. estimate the same quantity by Monte Carlo instead.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm

from fedleak.privacy import SubsampledGaussian, import_opacus


def gaussian_rero(mu: float, kappa: float) -> float:
    """ReRo bound of a Gaussian mechanism with μ = sensitivity/σ (composition included) at prior κ."""
    _check_prior(kappa)
    if mu == math.inf:
        return 1.0
    return float(norm.cdf(norm.ppf(kappa) + mu))


def local_dp_rero(sigma: float, clipping_norm: float, rounds: int, kappa: float) -> float:
    """ReRo bound, for one training record, of ``rounds`` local-DP releases (clip to ``clipping_norm``, noise σ).

    One record added to the shard moves the clipped update by at most 2·clipping_norm (both updates lie in the
    clipping ball), whatever sensitivity the per-update ε was calibrated to: μ = 2·C·√rounds / σ.
    """
    mu = math.inf if sigma == 0 else 2 * clipping_norm * math.sqrt(rounds) / sigma
    return gaussian_rero(mu, kappa)


def dp_sgd_rero(mechanism: SubsampledGaussian, rounds: int, kappa: float, eps_error: float = 0.01,
                delta_error: float = 1e-9) -> float:
    """ReRo bound of ``rounds`` rounds of DP-SGD (``mechanism.steps`` subsampled releases each) at prior κ.

    The profile is that of (without the target, with it) — the pair the informed adversary's test separates — which
    is the direction Opacus' privacy random variable takes. Opacus' estimate of δ at ε is within its stated errors;
    δ(ε) ≤ δ̂(ε − eps_error) + delta_error makes the bound an upper bound.
    """
    _check_prior(kappa)
    if mechanism.noise_multiplier == 0:
        return 1.0
    steps = mechanism.steps * rounds
    if mechanism.sample_rate >= 1.0:  # no subsampling: one Gaussian of μ = √T/σ, in closed form
        return gaussian_rero(math.sqrt(steps) / mechanism.noise_multiplier, kappa)
    return numerical_rero(mechanism.noise_multiplier, mechanism.sample_rate, steps, kappa, eps_error, delta_error)


def numerical_rero(noise_multiplier: float, sample_rate: float, steps: int, kappa: float, eps_error: float = 0.01,
                   delta_error: float = 1e-9) -> float:
    """The ReRo bound of ``steps`` Poisson-subsampled Gaussian releases from Opacus' numerical privacy profile."""
    _check_prior(kappa)
    import_opacus()
    # lazy (start-up): Opacus takes seconds to import; only DP-SGD needs it
    from opacus.accountants import PRVAccountant

    accountant = PRVAccountant()
    accountant.history = [(noise_multiplier, sample_rate, steps)]
    prv = accountant._get_dprv(eps_error=eps_error, delta_error=delta_error)  # noqa: SLF001 (no public handle)
    # δ̂ at every point t of the loss's grid at once (as Opacus computes ε): δ̂(t) = P[L ≥ t] − eᵗ·E[e^(−L); L ≥ t].
    # Every ε gives an upper bound; taking ε = t + eps_error on the grid keeps δ(ε) ≤ δ̂(t) + delta_error.
    t, pmf = np.asarray(prv.domain.ts, dtype=float), np.asarray(prv.pmf, dtype=float)
    tail = np.cumsum(pmf[::-1])[::-1]
    weighted_tail = np.cumsum((pmf * np.exp(-t))[::-1])[::-1]
    delta_hat = np.clip(tail - np.exp(t) * weighted_tail, 0.0, 1.0)
    return float(min(1.0, np.min(kappa * np.exp(t + eps_error) + delta_hat + delta_error)))


def _check_prior(kappa: float) -> None:
    if not 0 < kappa < 1:
        raise ValueError(f"the prior's mass κ must lie in (0, 1), got {kappa}")

