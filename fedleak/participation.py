"""Which clients train in a round: ``clients.per_round`` of them, drawn reproducibly from (seed, round).

The server selects exactly these clients (:mod:`fedleak.server.sampling`), and a client counts the rounds it took
part in from the same draw, for its privacy accounting: both sides compute, neither needs to remember.
Like Flower's ``fraction_train`` / ``min_train_nodes``, every round draws anew, uniformly without replacement.
"""

from __future__ import annotations

import numpy as np

#: Keeps the participation draw apart from the batch draw and the defense noise, which also seed with the round.
_PARTICIPATION_STREAM = 3


def sampled_clients(count: int, per_round: int | None, seed: int, server_round: int) -> list[int]:
    """The sorted ids of the clients that train in ``server_round`` (all ``count`` when ``per_round`` is None)."""
    if per_round is None or per_round >= count:
        return list(range(count))
    rng = np.random.default_rng([seed % 2**64, server_round, _PARTICIPATION_STREAM])
    return sorted(int(c) for c in rng.choice(count, size=per_round, replace=False))


def rounds_taken_part(count: int, per_round: int | None, seed: int, client: int, up_to_round: int) -> list[int]:
    """The rounds 1..``up_to_round`` in which ``client`` was selected."""
    if per_round is None or per_round >= count:
        return list(range(1, up_to_round + 1))
    return [r for r in range(1, up_to_round + 1) if client in sampled_clients(count, per_round, seed, r)]
