"""The membership candidate set of one update: the records the client trained on and as many held-out non-members.

The honest-but-curious server is granted this set without knowing which candidate is which: the attack receives the
candidates' dataset indices (to look up images and labels) in a shuffled order; :attr:`CandidateSet.is_member` stays
with the scorer. Non-members come from the scenario's held-out split (``data.eval_fraction``), which no client trains
on. Where the held-out split is smaller than the update's records (the bundled MNIST has 5000 images in all), an
equal number of members is drawn from the update's records, so the two classes stay balanced; the counts are written
into every row. Every draw derives from (seed, round, client), so reruns and other processes agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Keeps the candidate draw apart from the seed's other streams (partitions, batches, attack sampling).
_CANDIDATE_STREAM = 7


@dataclass(frozen=True)
class CandidateSet:
    """One update's candidates, in the order the attack sees them.

    Attributes:
        indices: dataset indices of the candidates (members and non-members shuffled together).
        is_member: for the scorer only: whether each candidate was trained on in this update.
        trained: how many distinct records the client trained on in this update.
        pool: how many held-out records the non-members were drawn from.
    """

    indices: np.ndarray
    is_member: np.ndarray
    trained: int
    pool: int

    @property
    def members(self) -> int:
        return int(self.is_member.sum())

    @property
    def non_members(self) -> int:
        return int((~self.is_member).sum())


def candidate_count(trained: int, pool: int, max_members: int | None = None) -> int:
    """Members (and as many non-members) per update: every trained record, capped by ``max_members`` and by the
    held-out pool."""
    return min(trained, pool, max_members if max_members is not None else trained)


def candidate_set(
    trained: np.ndarray, held_out: np.ndarray, seed: int, server_round: int, client: int,
    max_members: int | None = None,
) -> CandidateSet:
    """Draw one update's candidates reproducibly from (seed, round, client).

    Args:
        trained: dataset indices the client trained on this round (repeats allowed, e.g. several epochs).
        held_out: the held-out split's dataset indices (never in any shard).
        seed, server_round, client: where the draw comes from.
        max_members: at most this many members per update (None: as many as the pool allows).
    """
    members = np.unique(np.asarray(trained, dtype=np.int64))
    pool = np.asarray(held_out, dtype=np.int64)
    if np.intersect1d(members, pool).size:
        raise ValueError("the held-out split overlaps the client's training records; they cannot be non-members")
    k = candidate_count(len(members), len(pool), max_members)
    rng = np.random.default_rng([seed % 2**64, server_round, client, _CANDIDATE_STREAM])
    chosen = np.concatenate([rng.choice(members, size=k, replace=False), rng.choice(pool, size=k, replace=False)])
    truth = np.concatenate([np.ones(k, dtype=bool), np.zeros(k, dtype=bool)])
    order = rng.permutation(2 * k)
    return CandidateSet(indices=chosen[order], is_member=truth[order], trained=len(members), pool=len(pool))
