"""Held-out split, client partitions and per-round batches: deterministic, disjoint, as skewed as asked."""

from __future__ import annotations

import numpy as np
import pytest

from fedleak.config.schema import ClientsConfig, DataConfig
from fedleak.data import client_batch_indices, label_histogram, load_images, partition, split_eval
from fedleak.errors import UserError


@pytest.fixture(scope="module")
def mnist_labels() -> np.ndarray:
    """Labels of the 5000 bundled MNIST training images (500 per digit)."""
    return load_images(DataConfig(dataset="mnist", split="train")).labels.numpy()


def clients(count: int, **partition_fields) -> ClientsConfig:
    return ClientsConfig(count=count, partition=partition_fields or {"kind": "iid"})


PARTITIONS = [{"kind": "iid"}, {"kind": "dirichlet", "alpha": 0.3}, {"kind": "shards", "shards_per_client": 2}]


# --- held-out split ------------------------------------------------------------------------------------------------

def test_split_eval_is_a_deterministic_disjoint_cover():
    train, held_out = split_eval(1000, 0.2, seed=3)
    assert len(held_out) == 200 and len(train) == 800
    assert np.array_equal(np.sort(np.concatenate([train, held_out])), np.arange(1000))
    again_train, again_held_out = split_eval(1000, 0.2, seed=3)
    assert np.array_equal(train, again_train) and np.array_equal(held_out, again_held_out)
    assert not np.array_equal(held_out, split_eval(1000, 0.2, seed=4)[1])


def test_split_eval_edge_cases():
    train, held_out = split_eval(1, 0.2, seed=0)  # a single photo stays in training
    assert train.tolist() == [0] and held_out.size == 0
    assert split_eval(10, 0.0, seed=0)[1].size == 0
    with pytest.raises(UserError):
        split_eval(0, 0.2, seed=0)


# --- partitions ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("scheme", PARTITIONS, ids=lambda s: s["kind"])
def test_partition_covers_every_training_index_exactly_once(mnist_labels, scheme):
    train, held_out = split_eval(len(mnist_labels), 0.2, seed=0)
    shards = partition(mnist_labels, train, clients(10, **scheme), seed=0)
    assert len(shards) == 10 and all(len(s) > 0 for s in shards)
    joined = np.concatenate(shards)
    assert len(joined) == len(train) and np.array_equal(np.sort(joined), train)
    assert not set(joined.tolist()) & set(held_out.tolist())
    assert all(np.array_equal(s, np.sort(s)) and s.dtype == np.int64 for s in shards)


@pytest.mark.parametrize("scheme", [*PARTITIONS, {"kind": "sizes", "sizes": [5, 50, 500]}], ids=lambda s: s["kind"])
def test_partition_is_deterministic_in_the_seed(mnist_labels, scheme):
    train = np.arange(len(mnist_labels))
    config = clients(3, **scheme)
    first = partition(mnist_labels, train, config, seed=11)
    second = partition(mnist_labels, train, config, seed=11)
    other = partition(mnist_labels, train, config, seed=12)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_iid_shards_are_balanced(mnist_labels):
    shards = partition(mnist_labels, np.arange(5000), clients(7), seed=0)
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1


def dominant_share(labels: np.ndarray, shards: list[np.ndarray]) -> float:
    """Mean over clients of the share of the client's most frequent class."""
    histogram = label_histogram(labels, shards, num_classes=10)
    return float(np.mean(histogram.max(axis=1) / histogram.sum(axis=1)))


def test_dirichlet_small_alpha_skews_labels(mnist_labels):
    train = np.arange(len(mnist_labels))
    iid = dominant_share(mnist_labels, partition(mnist_labels, train, clients(10), seed=0))
    skewed = dominant_share(mnist_labels, partition(mnist_labels, train, clients(10, kind="dirichlet", alpha=0.05),
                                                    seed=0))
    mild = dominant_share(mnist_labels, partition(mnist_labels, train, clients(10, kind="dirichlet", alpha=100.0),
                                                  seed=0))
    assert skewed > 0.5 > 0.2 > mild and iid < 0.2  # a 10-class balanced shard has share ≈ 0.1


def test_dirichlet_never_leaves_a_client_empty():
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5])
    for seed in range(20):
        shards = partition(labels, np.arange(12), clients(11, kind="dirichlet", alpha=0.01), seed=seed)
        assert all(len(s) >= 1 for s in shards)
        assert np.array_equal(np.sort(np.concatenate(shards)), np.arange(12))


def test_label_shards_give_each_client_few_classes(mnist_labels):
    shards = partition(mnist_labels, np.arange(5000), clients(10, kind="shards", shards_per_client=2), seed=0)
    classes_per_client = (label_histogram(mnist_labels, shards, 10) > 0).sum(axis=1)
    # 20 label-sorted pieces of 250 images: each piece is one digit, so a client holds at most 2 digits.
    assert classes_per_client.max() <= 2


def test_sizes_partition_takes_exact_counts(mnist_labels):
    train = np.arange(100, 400)
    shards = partition(mnist_labels, train, clients(3, kind="sizes", sizes=[1, 20, 279]), seed=0)
    assert [len(s) for s in shards] == [1, 20, 279]
    joined = np.concatenate(shards)
    assert len(set(joined.tolist())) == 300 and set(joined.tolist()) <= set(train.tolist())


def test_partition_errors_name_the_field(mnist_labels):
    with pytest.raises(UserError, match="partition.sizes: asks for 301"):
        partition(mnist_labels, np.arange(300), clients(2, kind="sizes", sizes=[300, 1]), seed=0)
    with pytest.raises(UserError, match="clients.count: 6 clients but only 5"):
        partition(mnist_labels, np.arange(5), clients(6), seed=0)
    with pytest.raises(UserError, match="shards_per_client"):
        partition(mnist_labels, np.arange(10), clients(4, kind="shards", shards_per_client=3), seed=0)


# --- batches -------------------------------------------------------------------------------------------------------

def test_batches_are_reproducible_from_seed_client_and_round():
    shard = np.arange(1000, 1100)
    batch = client_batch_indices(shard, 8, seed=5, client=2, round=3)
    assert np.array_equal(batch, client_batch_indices(shard.copy(), 8, seed=5, client=2, round=3))
    expected = shard[np.random.default_rng([5, 2, 3]).choice(100, size=8, replace=False)]
    assert np.array_equal(batch, expected)  # the documented recipe, so the scorer can recompute it
    assert len(set(batch.tolist())) == 8 and set(batch.tolist()) <= set(shard.tolist())


def test_batches_differ_across_rounds_clients_and_seeds():
    shard = np.arange(500)
    keys = [(0, 0, 1), (0, 0, 2), (0, 1, 1), (1, 0, 1)]  # (seed, client, round): one changed at a time
    batches = {tuple(client_batch_indices(shard, 4, seed=s, client=c, round=r)) for s, c, r in keys}
    assert len(batches) == len(keys)


def test_whole_shard_batch_and_too_large_batch():
    shard = np.array([4, 9, 13])
    assert sorted(client_batch_indices(shard, 3, seed=0, client=0, round=1).tolist()) == [4, 9, 13]
    with pytest.raises(UserError, match="client 7 holds 3 training images but its batch_size is 4"):
        client_batch_indices(shard, 4, seed=0, client=7, round=1)


def test_negative_seed_is_accepted():
    partition(np.zeros(10, np.int64), np.arange(10), clients(2), seed=-1)
    split_eval(10, 0.5, seed=-1)
    assert len(client_batch_indices(np.arange(10), 2, seed=-1, client=0, round=0)) == 2
