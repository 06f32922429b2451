"""Held-out evaluation split and the partition of the training images into one shard per client.

Everything is a pure function of its arguments and the seed (numpy ``Generator``), so a run, its attacks and its
scorer all see the same shards. Shards hold indices into the :class:`~fedleak.data.imageset.ImageSet`, sorted
ascending. The held-out images are never in any shard.

Partitions (``clients.partition.kind``):

* ``iid``: a random permutation cut into ``count`` near-equal shards.
* ``dirichlet``: per class, the images are dealt to clients in proportions drawn from Dirichlet(alpha·1)
  (Hsu, Qi, Brown 2019, arXiv 1909.06335); small alpha → each client sees few classes. No shard is empty:
  the draw is repeated (up to 100 times), then any client still empty takes one image from the largest shard.
* ``shards``: sort by label, cut into ``count × shards_per_client`` pieces, deal the pieces at random
  (McMahan et al. 2017, arXiv 1602.05629).
* ``sizes``: client i gets ``sizes[i]`` distinct random images (with ``alpha``: labels skewed by a Dirichlet
  mix per client); the rest stay unused.

iid, dirichlet and shards put every training index in exactly one shard.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fedleak.config.schema import (
    ClientsConfig,
    DirichletPartition,
    IidPartition,
    ShardPartition,
    SizesPartition,
)
from fedleak.errors import UserError
from fedleak.registry import Registry

# Separate random streams for separate decisions, so changing one never shifts another.
_EVAL_STREAM = 0x45A1
_PARTITION_STREAM = 0x9A27
_DIRICHLET_REDRAWS = 100


def _rng(seed: int, stream: int) -> np.random.Generator:
    # SeedSequence needs non-negative entropy; fold negative seeds into uint64 without collisions.
    return np.random.default_rng([seed % 2**64, stream])


def split_eval(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(n)`` into (train indices, held-out indices), both sorted int64.

    The held-out share is ``floor(n · fraction)`` images, so a single image always stays in training.
    """
    if n < 1:
        raise UserError("the data source has no images to split")
    if not 0 <= fraction < 1:
        raise UserError(f"data.eval_fraction must be in [0, 1), got {fraction}")
    held_out = int(n * fraction)
    order = _rng(seed, _EVAL_STREAM).permutation(n)
    return np.sort(order[held_out:]).astype(np.int64), np.sort(order[:held_out]).astype(np.int64)


def partition(labels: np.ndarray, train_indices: np.ndarray, clients: ClientsConfig, seed: int) -> list[np.ndarray]:
    """Deal ``train_indices`` to ``clients.count`` clients.

    Args:
        labels: Labels of the whole image set (indexed by ``train_indices``).
        train_indices: Indices available for training (e.g. the first result of :func:`split_eval`).
        clients: The scenario's ``clients`` section (count and partition kind).
        seed: The scenario seed.

    Returns:
        One sorted int64 index array per client.
    """
    labels = np.asarray(labels)
    train = np.asarray(train_indices, dtype=np.int64)
    scheme = clients.partition
    rng = _rng(seed, _PARTITION_STREAM)
    shards = PARTITIONS.get(scheme.kind)(labels, train, clients.count, scheme, rng)
    return [np.sort(shard).astype(np.int64) for shard in shards]


#: (labels of the whole set, training indices, client count, the partition's settings, rng) → one shard per client.
PartitionFn = Callable[[np.ndarray, np.ndarray, int, Any, np.random.Generator], list[np.ndarray]]
#: One function per ``clients.partition.kind``; the schema's partition kinds must all be here (a test checks).
PARTITIONS: Registry[PartitionFn] = Registry("partition")


def _need_an_image_per_client(train: np.ndarray, count: int) -> None:
    if len(train) < count:
        raise UserError(f"clients.count: {count} clients but only {len(train)} training images (after holding "
                        f"out data.eval_fraction); use fewer clients or more data")


@PARTITIONS.register("iid")
def _iid(labels, train, count: int, scheme: IidPartition, rng: np.random.Generator) -> list[np.ndarray]:
    _need_an_image_per_client(train, count)
    return np.array_split(rng.permutation(train), count)


@PARTITIONS.register("dirichlet")
def _dirichlet_partition(labels, train, count: int, scheme: DirichletPartition,
                         rng: np.random.Generator) -> list[np.ndarray]:
    _need_an_image_per_client(train, count)
    return _dirichlet(labels[train], train, count, scheme.alpha, rng)


@PARTITIONS.register("shards")
def _shards_partition(labels, train, count: int, scheme: ShardPartition, rng: np.random.Generator) -> list[np.ndarray]:
    _need_an_image_per_client(train, count)
    return _label_shards(labels[train], train, count, scheme.shards_per_client, rng)


@PARTITIONS.register("sizes")
def _sizes_partition(labels, train, count: int, scheme: SizesPartition, rng: np.random.Generator) -> list[np.ndarray]:
    _check_sizes(train, scheme.sizes)
    if scheme.alpha is None:
        return _sizes(train, scheme.sizes, rng)
    return _sizes_skewed(labels[train], train, scheme.sizes, scheme.alpha, rng)


def _check_sizes(train: np.ndarray, sizes: list[int]) -> None:
    wanted = sum(sizes)
    if wanted > len(train):
        raise UserError(f"clients.partition.sizes: asks for {wanted} images in all but only {len(train)} training "
                        f"images exist (after holding out data.eval_fraction); lower the sizes")


def _sizes(train: np.ndarray, sizes: list[int], rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(train)
    ends = np.cumsum(sizes)
    return [order[end - size : end] for size, end in zip(sizes, ends, strict=True)]


def _sizes_skewed(train_labels: np.ndarray, train: np.ndarray, sizes: list[int], alpha: float,
                  rng: np.random.Generator) -> list[np.ndarray]:
    """Client i gets ``sizes[i]`` images whose labels follow its own Dirichlet(alpha) mix of the classes (label
    skew, as in Hsu et al. 2019, arXiv 1909.06335); a class that runs out is filled from the images left."""
    pools = {int(c): list(rng.permutation(train[train_labels == c])) for c in np.unique(train_labels)}
    classes = sorted(pools)
    shards = []
    for size in sizes:
        counts = rng.multinomial(size, rng.dirichlet(np.full(len(classes), alpha)))
        taken = [pools[c].pop() for c, k in zip(classes, counts, strict=True) for _ in range(min(k, len(pools[c])))]
        rest = [i for c in classes for i in pools[c]]
        extra = list(rng.permutation(rest)[: size - len(taken)])
        for index in extra:
            pools[int(train_labels[np.searchsorted(train, index)])].remove(index)
        shards.append(np.asarray(taken + extra, dtype=np.int64))
    return shards


def _dirichlet(
    train_labels: np.ndarray, train: np.ndarray, count: int, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    classes = np.unique(train_labels)
    for _ in range(_DIRICHLET_REDRAWS):
        parts: list[list[np.ndarray]] = [[] for _ in range(count)]
        for cls in classes:
            members = rng.permutation(train[train_labels == cls])
            proportions = rng.dirichlet(np.full(count, alpha))
            cuts = (np.cumsum(proportions)[:-1] * len(members)).astype(np.int64)
            for client, piece in enumerate(np.split(members, cuts)):
                parts[client].append(piece)
        shards = [np.concatenate(p) for p in parts]
        if all(len(s) for s in shards):
            return shards
    # Still an empty client after many draws (tiny data or tiny alpha): move one image from the largest shard.
    for client in range(count):
        if not len(shards[client]):
            donor = int(np.argmax([len(s) for s in shards]))
            shards[client], shards[donor] = shards[donor][-1:], shards[donor][:-1]
    return shards


def _label_shards(
    train_labels: np.ndarray, train: np.ndarray, count: int, per_client: int, rng: np.random.Generator
) -> list[np.ndarray]:
    total = count * per_client
    if total > len(train):
        raise UserError(f"clients.partition.shards_per_client: {count} clients × {per_client} shards = {total} "
                        f"shards but only {len(train)} training images; lower shards_per_client")
    by_label = train[np.lexsort((train, train_labels))]  # label first, index breaks ties: stable and seed-free
    pieces = np.array_split(by_label, total)
    dealt = rng.permutation(total)
    return [np.concatenate([pieces[i] for i in dealt[c * per_client : (c + 1) * per_client]]) for c in range(count)]


def label_histogram(labels: np.ndarray, shards: list[np.ndarray], num_classes: int) -> np.ndarray:
    """clients × classes counts: how many images of each class each client holds (for reports and checks)."""
    labels = np.asarray(labels)
    return np.stack([np.bincount(labels[shard], minlength=num_classes) for shard in shards])
