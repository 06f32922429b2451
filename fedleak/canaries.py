"""Canaries for the one-run DP audit (:mod:`fedleak.privacy_audit`): which records, with which labels, and which
of them a client's shard really contains — all from the seed, so every process that asks gets the same answer.

Each audited client gets its own ``m`` canaries, drawn without overlap from a pool of images no client trains on
(the held-out split); each is included in its client's shard with probability ½, independently (Steinke, Nasr &
Jagielski 2023, arXiv 2305.08846, §3). ``mislabelled`` canaries carry a label drawn uniformly from the other classes:
an input the model would not predict that label for moves the weights in a direction no ordinary record pushes, which
is what makes it detectable (measured against ``held_out`` canaries with their true labels: bench/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

CanaryKind = Literal["mislabelled", "held_out"]
#: Keeps the canary draws apart from every other stream derived from the seed.
_CANARY_STREAM = 7


@dataclass(frozen=True)
class Canaries:
    """One client's canaries: image indices, the labels they are trained with, and which the shard contains."""

    indices: np.ndarray
    labels: np.ndarray
    included: np.ndarray

    def inserted(self) -> tuple[np.ndarray, np.ndarray]:
        """(indices, training labels) of the canaries in the shard."""
        return self.indices[self.included], self.labels[self.included]


def draw_canaries(pool: np.ndarray, pool_labels: np.ndarray, per_client: int, clients: list[int], num_classes: int,
                  seed: int, kind: CanaryKind = "mislabelled") -> dict[int, Canaries]:
    """``per_client`` canaries for each of ``clients`` from ``pool`` (image indices, with their true labels).

    Raises:
        ValueError: the pool holds fewer than ``per_client · len(clients)`` images.
    """
    pool, pool_labels = np.asarray(pool, dtype=np.int64), np.asarray(pool_labels, dtype=np.int64)
    need = per_client * len(clients)
    if need > len(pool):
        raise ValueError(f"{len(clients)} client(s) × {per_client} canaries need {need} held-out images, the pool "
                         f"has {len(pool)}")
    rng = np.random.default_rng([seed % 2**64, _CANARY_STREAM])
    chosen = rng.permutation(len(pool))[:need]
    offsets = rng.integers(1, num_classes, size=need)  # drawn for every kind, so inclusion does not depend on it
    included = rng.random(need) < 0.5
    drawn: dict[int, Canaries] = {}
    for slot, client in enumerate(clients):
        part = slice(slot * per_client, (slot + 1) * per_client)
        labels = pool_labels[chosen[part]]
        if kind == "mislabelled":
            labels = (labels + offsets[part]) % num_classes
        drawn[client] = Canaries(pool[chosen[part]], labels, included[part])
    return drawn
