"""Which images a client trains on in a round.

The choice depends on ``(seed, client, round)`` alone, so the scorer can recompute or look up the exact batch
from the audit record later, and attacking one client or round never changes another's batch.
"""

from __future__ import annotations

import numpy as np

from fedleak.errors import UserError


def client_batch_indices(shard: np.ndarray, batch_size: int, seed: int, client: int, round: int) -> np.ndarray:
    """``batch_size`` distinct indices drawn from ``shard``, in draw order.

    Args:
        shard: The client's image-set indices (from :func:`~fedleak.data.partitioning.partition`).
        batch_size: Images in the batch; at most ``len(shard)``.
        seed: The scenario seed.
        client: The client id (≥ 0).
        round: The round number (≥ 0; the caller's numbering, used as given).

    Returns:
        int64 indices into the image set (not into the shard).
    """
    shard = np.asarray(shard, dtype=np.int64)
    if client < 0 or round < 0:
        raise ValueError(f"client and round must be non-negative, got client={client}, round={round}")
    if batch_size < 1:
        raise UserError(f"training.batch_size must be at least 1, got {batch_size}")
    if batch_size > len(shard):
        raise UserError(f"client {client} holds {len(shard)} training images but its batch_size is {batch_size}; "
                        f"lower training.batch_size (or this client's override), use fewer clients or more data")
    rng = np.random.default_rng([seed % 2**64, client, round])
    return shard[rng.choice(len(shard), size=batch_size, replace=False)]
