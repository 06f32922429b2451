"""The one-run audit's bound (Steinke, Nasr & Jagielski 2023, arXiv 2305.08846) and the canary draws."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedleak.canaries import draw_canaries
from fedleak.privacy_audit import audit_from_scores, audit_p_value, epsilon_lower_bound


def test_p_value_by_hand():
    # m = r = v = 10, ε = ln 9 (guess accuracy p = 0.9), δ = 1e-3, by hand from Theorem 5.2:
    # β = 0.9¹⁰ = 0.3486784401; P[Bin = 9] = 10·0.9⁹·0.1 = 0.387420489, P[Bin = 8] = 45·0.9⁸·0.01 = 0.1937102445,
    # so α = max(0.387420489, 0.5811307335 / 2, …) = 0.387420489; p = β + 2·10·1e-3·α = 0.35642684988.
    assert audit_p_value(10, 10, 10, math.log(9), 1e-3) == pytest.approx(0.35642684988, abs=1e-9)


def test_all_correct_pure_dp_bound_by_hand():
    # δ = 0 and all of r = 100 guesses right: the p-value is p¹⁰⁰, and 95 % confidence rejects every ε whose
    # p = eᵉ/(1+eᵉ) has p¹⁰⁰ ≤ 0.05: p* = 0.05^(1/100) = 0.9704874, ε* = ln(p*/(1 − p*)) = ln(32.8838) = 3.4930.
    assert epsilon_lower_bound(1000, 100, 100, delta=0.0) == pytest.approx(3.4930, abs=1e-3)


def test_bound_is_zero_for_chance_guesses_and_falls_with_delta():
    assert epsilon_lower_bound(1000, 100, 50, delta=1e-5) == 0.0
    assert epsilon_lower_bound(1000, 100, 95, delta=1e-3) < epsilon_lower_bound(1000, 100, 95, delta=1e-6)
    assert epsilon_lower_bound(1000, 100, 95, delta=0.0) > epsilon_lower_bound(1000, 100, 90, delta=0.0)


def test_audit_from_scores_counts_both_sides_and_abstains():
    included = np.array([True] * 6 + [False] * 6)
    scores = np.arange(12, 0, -1, dtype=float)  # members score highest: every guess right
    scores[5], scores[6] = scores[6], scores[5]  # swap the two in the middle: they are abstained on anyway
    result = audit_from_scores(scores, included, guesses=8, delta=0.0)
    assert (result.canaries, result.guesses, result.correct) == (12, 8, 8)
    flipped = audit_from_scores(-scores, included, guesses=8, delta=0.0)
    assert flipped.correct == 0 and flipped.epsilon_lower == 0.0


def test_canaries_reproducible_disjoint_and_mislabelled():
    pool = np.arange(100, 400)
    labels = pool % 10
    first = draw_canaries(pool, labels, 100, [0, 2], 10, seed=3)
    again = draw_canaries(pool, labels, 100, [0, 2], 10, seed=3)
    assert all(np.array_equal(first[c].indices, again[c].indices) for c in (0, 2))
    assert all(np.array_equal(first[c].included, again[c].included) for c in (0, 2))
    assert not set(first[0].indices) & set(first[2].indices)
    for canaries in first.values():
        assert np.all(canaries.labels != canaries.indices % 10)
        assert 30 < canaries.included.sum() < 70
    true = draw_canaries(pool, labels, 100, [0, 2], 10, seed=3, kind="held_out")
    assert np.array_equal(true[0].labels, true[0].indices % 10)
    assert np.array_equal(true[0].included, first[0].included)
    with pytest.raises(ValueError, match="need 400 held-out images"):
        draw_canaries(pool, labels, 200, [0, 1], 10, seed=3)
