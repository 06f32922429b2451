"""One-run DP audit: an empirical lower bound on ε from canaries included at random in a single training run.

Steinke, Nasr & Jagielski, "Privacy Auditing with One (1) Training Run", NeurIPS 2023, arXiv 2305.08846.
m canary records are each included in the training data independently with probability ½ (from the seed). After
the run the auditor ranks the canaries by a membership score, guesses "included" for the k₊ highest, "excluded" for
the k₋ lowest and abstains on the rest (r = k₊ + k₋ guesses, v of them correct). Under (ε, δ)-DP the number of correct
guesses is dominated by a Binomial(r, eᵉ/(1+eᵉ)) up to a δ-dependent slack (the paper's Theorem 5.2), which gives a
p-value for "the mechanism is (ε, δ)-DP"; the largest ε rejected at level 1 − confidence is the empirical lower bound.

k₊ and k₋ are fixed before the audit sees the truth (a sweep over them and its maximum would spend the confidence
several times). The bound holds for the guarantee of the neighbour relation the canaries vary: one *record* added
or removed. For DP-SGD (a per-record guarantee) it is a lower bound on the per-record ε the accountant claims. Local
DP's ε is per *update*; a record moves the clipped update by at most twice the clipping norm, so under the default
replace-one relation (sensitivity 2C) the per-update ε also bounds every record and the audit checks it; under the
zero-update relation (sensitivity C) the per-record ε is the update's at twice the sensitivity — that is what the
audit bounds, not the per-update ε itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import binom


def audit_p_value(canaries: int, guesses: int, correct: int, epsilon: float, delta: float) -> float:
    """P[≥ ``correct`` right out of ``guesses``] for any (ε, δ)-DP mechanism auditing ``canaries`` canaries.

    The paper's Theorem 5.2: with p = eᵉ/(1+eᵉ), β = P[Bin(r, p) ≥ v] and
    α = max over 1 ≤ i ≤ v of P[v − i ≤ Bin(r, p) < v] / i, the p-value is β + 2·m·δ·α (at most 1).
    """
    if not 0 <= correct <= guesses <= canaries:
        raise ValueError(f"need 0 ≤ correct ≤ guesses ≤ canaries, got {correct}, {guesses}, {canaries}")
    if epsilon < 0 or not 0 <= delta <= 1:
        raise ValueError(f"need ε ≥ 0 and 0 ≤ δ ≤ 1, got {epsilon}, {delta}")
    p = 1.0 / (1.0 + math.exp(-epsilon))
    beta = float(binom.sf(correct - 1, guesses, p))
    alpha = 0.0
    if delta > 0 and correct > 0:
        below = np.cumsum(binom.pmf(np.arange(correct - 1, -1, -1), guesses, p))  # P[v-i ≤ Bin < v], i = 1..v
        alpha = float(np.max(below / np.arange(1, correct + 1)))
    return min(1.0, beta + 2 * canaries * delta * alpha)


def epsilon_lower_bound(canaries: int, guesses: int, correct: int, delta: float, confidence: float = 0.95,
                        tolerance: float = 1e-6) -> float:
    """The largest ε whose (ε, δ)-DP hypothesis the guesses reject at ``confidence`` (0 when none is rejected).

    The p-value falls as ε falls, so the set of rejected ε is an interval [0, ε*): bisect for ε*. The returned value
    errs low by at most ``tolerance``, so it stays a lower bound.
    """
    level = 1.0 - confidence
    if audit_p_value(canaries, guesses, correct, 0.0, delta) > level:
        return 0.0
    high = 1.0
    while audit_p_value(canaries, guesses, correct, high, delta) <= level:
        high *= 2
        if high > 1e4:  # every guess right and δ = 0: no finite ε survives; 1e4 stands for "unbounded"
            return math.inf
    low = 0.0
    while high - low > tolerance:
        middle = (low + high) / 2
        if audit_p_value(canaries, guesses, correct, middle, delta) <= level:
            low = middle
        else:
            high = middle
    return low


@dataclass(frozen=True)
class AuditResult:
    """One audit: its counts and the bound they give."""

    canaries: int
    guesses: int
    correct: int
    epsilon_lower: float
    confidence: float


def audit_from_scores(scores: np.ndarray, included: np.ndarray, guesses: int, delta: float,
                      confidence: float = 0.95) -> AuditResult:
    """Guess "in" for the ``guesses // 2`` highest scores and "out" for as many lowest (``guesses − guesses // 2``
    when odd), abstain on the rest, and turn the right guesses into the bound. ``included`` is the truth, read here
    only to count."""
    scores, included = np.asarray(scores, dtype=float), np.asarray(included, dtype=bool)
    if scores.shape != included.shape or scores.ndim != 1:
        raise ValueError(f"need one score per canary, got shapes {scores.shape} and {included.shape}")
    m = len(scores)
    guesses = min(guesses, m)
    positive = guesses // 2
    order = np.argsort(-scores, kind="stable")  # most confident "in" first
    right = int(included[order[:positive]].sum()) + int((~included[order[m - (guesses - positive):]]).sum())
    bound = epsilon_lower_bound(m, guesses, right, delta, confidence)
    return AuditResult(m, guesses, right, bound, confidence)
