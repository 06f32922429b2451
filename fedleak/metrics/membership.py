"""Membership scores judged by the one party that knows membership: AUC and TPR at low FPR, each with an interval.

The attacks (``fedleak.attacks.membership``) score candidates blind; this module joins the truth. Conventions:

- AUC: the probability that a random member outscores a random non-member (ties count ½), scikit-learn's
  ``roc_auc_score``; its 95 % interval from Hanley & McNeil's standard error ("The meaning and use of the area
  under a receiver operating characteristic (ROC) curve", Radiology 143:29–36, 1982), clipped to [0, 1], and
  widened to the Clopper–Pearson interval of AUC·m wins in m = min(members, non-members) comparisons wherever that
  is wider. The widening matters for a handful of candidates, where the normal approximation collapses (one member
  and one non-member give AUC 1 half the time by chance, and Hanley & McNeil's interval at AUC 1 is [1, 1]); on a
  hospital's 1000 + 1000 candidates the Clopper–Pearson interval is the wider one, by about 0.005 on each side.
- TPR at FPR α: the largest share of members found by any threshold whose false-positive rate on the non-members
  is at most α (Carlini et al., "Membership Inference Attacks From First Principles", S&P 2022, arXiv 2112.03570,
  argue for this over accuracy). The threshold is chosen knowing membership, as in that paper: it is the attack's
  best operating point, not one an attacker could set blind. The count it rests on (true positives of how many
  members, false positives of how many non-members) is kept, with a Clopper–Pearson interval on the TPR
  (``scipy.stats.binomtest``). With fewer than 1/α non-members the only admissible threshold admits no false
  positive at all: the count says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest, norm
from sklearn.metrics import roc_auc_score, roc_curve

#: The false-positive rates at which the TPR is reported.
FPR_LEVELS = (0.01, 0.001)
CONFIDENCE = 0.95


@dataclass(frozen=True)
class TprAtFpr:
    """The TPR at one FPR level, with what it rests on."""

    fpr_level: float
    tpr: float
    low: float
    high: float
    true_positives: int
    false_positives: int
    members: int
    non_members: int


@dataclass(frozen=True)
class MembershipScore:
    """How well one attack's scores separate the members from the non-members of one candidate set."""

    members: int
    non_members: int
    auc: float
    auc_low: float
    auc_high: float
    at_fpr: tuple[TprAtFpr, ...]

    def tpr(self, level: float) -> TprAtFpr:
        return next(t for t in self.at_fpr if math.isclose(t.fpr_level, level))


def clopper_pearson(successes: int, trials: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The exact (Clopper–Pearson) interval of a binomial proportion."""
    if trials == 0:
        return 0.0, 1.0
    interval = binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="exact")
    return float(interval.low), float(interval.high)


def hanley_mcneil(auc: float, members: int, non_members: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """A normal interval on the AUC with Hanley & McNeil's (1982) standard error, clipped to [0, 1]."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    variance = (auc * (1 - auc) + (members - 1) * (q1 - auc**2) + (non_members - 1) * (q2 - auc**2)) / (
        members * non_members)
    half = norm.ppf(0.5 + confidence / 2) * math.sqrt(max(variance, 0.0))
    return float(max(0.0, auc - half)), float(min(1.0, auc + half))


def tpr_at_fpr(scores: np.ndarray, is_member: np.ndarray, level: float) -> TprAtFpr:
    """The best TPR over thresholds with FPR ≤ ``level``, its counts and Clopper–Pearson interval."""
    members, non_members = int(is_member.sum()), int((~is_member).sum())
    fpr, tpr, _ = roc_curve(is_member, scores, drop_intermediate=False)
    admissible = fpr <= level + 1e-12
    best = int(np.argmax(np.where(admissible, tpr, -1.0)))
    hits, false = round(tpr[best] * members), round(fpr[best] * non_members)
    low, high = clopper_pearson(hits, members)
    return TprAtFpr(level, hits / members, low, high, hits, false, members, non_members)


def score_membership(scores: np.ndarray, is_member: np.ndarray, levels: tuple[float, ...] = FPR_LEVELS
                     ) -> MembershipScore:
    """Judge ``scores`` (higher = member) against the truth ``is_member`` (booleans, same order)."""
    scores = np.asarray(scores, dtype=np.float64)
    is_member = np.asarray(is_member, dtype=bool)
    if scores.shape != is_member.shape:
        raise ValueError(f"{scores.shape[0]} scores for {is_member.shape[0]} candidates")
    members, non_members = int(is_member.sum()), int((~is_member).sum())
    if members == 0 or non_members == 0:
        raise ValueError(f"membership needs members and non-members; got {members} and {non_members}")
    if not np.isfinite(scores).all():
        raise ValueError("non-finite membership scores")
    auc = float(roc_auc_score(is_member, scores))
    low, high = hanley_mcneil(auc, members, non_members)
    pairs = min(members, non_members)
    exact_low, exact_high = clopper_pearson(round(auc * pairs), pairs)
    low, high = min(low, exact_low), max(high, exact_high)
    at_fpr = tuple(tpr_at_fpr(scores, is_member, level) for level in levels)
    return MembershipScore(members, non_members, auc, low, high, at_fpr)
