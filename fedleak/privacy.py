"""Privacy accounting in one place: what a client's DP defense guarantees after the rounds it took part in.

Two mechanisms with two different units, never to be read as the same guarantee:

- **DP-SGD** (unit ``record``): ε bounds what the server can learn about the presence of any one training example
  of the client, from everything the client sent so far. Accounted with Opacus' RDP accountant on the subsampled
  Gaussian mechanism that actually runs (Poisson sampling at rate ``q = batch_size / shard size``):
  - ``gradient``: one noisy gradient of one Poisson batch per round → one subsampled release per round;
  - ``local_steps``: one Poisson batch reused for K noisy steps. K Gaussian releases on the same records compose
    to one Gaussian with noise multiplier σ/√K, sampled once → one subsampled release per round at σ/√K (never K
    independent subsampled steps, which would under-count);
  - ``epochs``: E passes of ``int(1/q)`` Poisson batches each (Opacus' data-loader convention) → ``E·int(1/q)``
    subsampled releases per round.
- **Local DP on the update** (unit ``update(<relation>)``): each round the clipped update gets Gaussian noise
  calibrated with the analytic Gaussian mechanism (Balle & Wang 2018, "Improving the Gaussian Mechanism for
  Differential Privacy", arXiv 1805.06530), valid for every ε, unlike the classical σ = Δ·sqrt(2 ln(1.25/δ))/ε
  (ε < 1 only). ε bounds how well the server can tell the client's update from a neighbouring one: by default
  ``replace-one``, any other clipped update (L2 distance up to 2C, the standard local-DP relation); explicitly
  ``zero-update``, no update at all (distance up to C, a weaker guarantee).
  T rounds of a Gaussian mechanism compose exactly to one Gaussian whose μ = Δ/σ grows by √T (Dong, Roth & Su
  2019, "Gaussian Differential Privacy", arXiv 1905.02383), so the composed ε is exact, not a bound.

Rounds count only where the client took part (client sampling makes this differ per client).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from scipy.optimize import brentq
from scipy.stats import norm

#: ``record`` (DP-SGD), or ``update(<relation>)`` (local DP: ``update(replace-one)``, ``update(zero-update)``).
PrivacyUnit = str


@dataclass(frozen=True)
class PrivacySpent:
    """ε at δ, composed over the rounds a client took part in, and what it protects."""

    epsilon: float
    delta: float
    unit: PrivacyUnit


# --- the Gaussian mechanism, exactly ---------------------------------------------------------------------------


def gaussian_delta(epsilon: float, mu: float) -> float:
    """The smallest δ at which a Gaussian mechanism with μ = sensitivity/σ is (ε, δ)-DP (Balle & Wang, Thm. 8)."""
    if mu <= 0:
        return 0.0
    first = norm.cdf(-epsilon / mu + mu / 2)
    # e^ε Φ(·) in log space: e^ε overflows long before the product does.
    second = math.exp(epsilon + norm.logcdf(-epsilon / mu - mu / 2))
    return max(0.0, float(first - second))


def gaussian_epsilon(mu: float, delta: float) -> float:
    """The smallest ε ≥ 0 at which a Gaussian mechanism with μ = sensitivity/σ is (ε, δ)-DP."""
    if mu == math.inf:
        return math.inf
    if gaussian_delta(0.0, mu) <= delta:
        return 0.0
    high = 1.0
    while gaussian_delta(high, mu) > delta:
        high *= 2
    return float(brentq(lambda e: gaussian_delta(e, mu) - delta, 0.0, high, xtol=1e-12, rtol=1e-12))


def calibrate_gaussian_sigma(epsilon: float, delta: float, sensitivity: float) -> float:
    """The smallest noise σ that makes one release with L2 ``sensitivity`` (ε, δ)-DP (analytic Gaussian)."""
    if epsilon <= 0 or not 0 < delta < 1 or sensitivity <= 0:
        raise ValueError(f"need ε > 0, 0 < δ < 1 and sensitivity > 0, got {epsilon}, {delta}, {sensitivity}")
    # δ(ε) grows with μ: find the largest μ that still meets δ, then σ = Δ/μ.
    high = 1.0
    while gaussian_delta(epsilon, high) < delta:
        high *= 2
    mu = brentq(lambda m: gaussian_delta(epsilon, m) - delta, 1e-12, high, xtol=1e-14, rtol=1e-14)
    return sensitivity / float(mu)


def local_dp_spent(sigma: float, sensitivity: float, delta: float, rounds: int,
                   relation: str = "replace-one") -> PrivacySpent:
    """ε of ``rounds`` Gaussian releases of one client's clipped update (exact composition); ``sensitivity`` is the
    L2 distance between neighbouring updates under ``relation``, which the unit names."""
    if rounds < 1:
        raise ValueError(f"a client that took part in {rounds} rounds has released nothing")
    mu = math.inf if sigma == 0 else math.sqrt(rounds) * sensitivity / sigma
    return PrivacySpent(gaussian_epsilon(mu, delta), delta, f"update({relation})")


def import_opacus() -> None:
    """Import Opacus without the logging handler it installs on the root logger at import time (``basicConfig``
    in ``opacus.utils.module_utils``), which would print every DEBUG record of Flower and Ray."""
    root = logging.getLogger()
    before = list(root.handlers)
    # lazy (start-up): Opacus takes seconds to import; only DP-SGD needs it
    import opacus.accountants  # noqa: F401
    import opacus.optimizers  # noqa: F401
    import opacus.validators  # noqa: F401

    for handler in root.handlers[:]:
        if handler not in before:
            root.removeHandler(handler)


# --- DP-SGD ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubsampledGaussian:
    """One round of DP-SGD as the accountant sees it: ``steps`` releases at ``noise_multiplier`` and ``sample_rate``."""

    noise_multiplier: float
    sample_rate: float
    steps: int


def dp_sgd_round(kind: str, noise_multiplier: float, batch_size: int, shard_size: int, local_steps: int,
                 local_epochs: int) -> SubsampledGaussian:
    """The mechanism one round of a client's DP-SGD runs (see the module docstring)."""
    rate = min(1.0, batch_size / shard_size)
    if kind == "gradient":
        return SubsampledGaussian(noise_multiplier, rate, 1)
    if kind == "local_steps":
        return SubsampledGaussian(noise_multiplier / math.sqrt(local_steps), rate, 1)
    if kind == "epochs":
        return SubsampledGaussian(noise_multiplier, rate, local_epochs * poisson_steps_per_epoch(rate))
    raise ValueError(f"unknown update kind {kind!r}")


def poisson_steps_per_epoch(sample_rate: float) -> int:
    """Poisson batches per epoch, as Opacus' DP data loader counts them: ``int(1 / q)``."""
    return max(1, int(1 / sample_rate))


def dp_sgd_spent(round_mechanism: SubsampledGaussian, rounds: int, delta: float) -> PrivacySpent:
    """ε of ``rounds`` rounds of ``round_mechanism`` (Opacus' RDP accountant)."""
    if rounds < 1:
        raise ValueError(f"a client that took part in {rounds} rounds has released nothing")
    if round_mechanism.noise_multiplier == 0:
        return PrivacySpent(math.inf, delta, "record")
    import_opacus()
    # lazy (start-up): Opacus takes seconds to import; only DP-SGD needs it
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = [(round_mechanism.noise_multiplier, round_mechanism.sample_rate,
                           round_mechanism.steps * rounds)]
    return PrivacySpent(float(accountant.get_epsilon(delta=delta)), delta, "record")
