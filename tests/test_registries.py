"""Every extension point is a registry, and each registry agrees with the scenario schema that names its entries."""

from __future__ import annotations

from typing import get_args

import numpy as np
import pytest

from fedleak.clients.defenses import DURING_TRAINING, TRANSFORMS, apply_defense, noise_generator
from fedleak.config.schema import DEFENSE_SETTINGS, PARTITION_SETTINGS, ClientsConfig, SourceName, Strict, kind_of
from fedleak.data import DATA_SOURCES, PARTITIONS, partition
from fedleak.registry import Registry


def test_every_data_source_the_schema_admits_has_one_loader():
    assert set(get_args(SourceName)) == set(DATA_SOURCES.names())


def test_every_partition_kind_has_one_function_and_it_deals_every_client_a_shard():
    assert PARTITION_SETTINGS.names() == PARTITIONS.names()
    labels = np.arange(200) % 10
    for kind, settings in zip(PARTITION_SETTINGS.names(), PARTITION_SETTINGS.values(), strict=True):
        fields = {"kind": kind} | ({"sizes": [5, 7, 9]} if kind == "sizes" else {})
        clients = ClientsConfig(count=3, partition=settings(**fields))
        shards = partition(labels, np.arange(200), clients, seed=0)
        assert len(shards) == 3 and all(len(s) > 0 for s in shards), kind
        assert len(np.unique(np.concatenate(shards))) == sum(len(s) for s in shards), kind


def test_every_defense_kind_is_handled_exactly_once():
    handled = [set(TRANSFORMS.names()), set(DURING_TRAINING), {"none"}]
    assert set().union(*handled) == set(DEFENSE_SETTINGS.names())
    assert sum(len(h) for h in handled) == len(DEFENSE_SETTINGS.names())


@pytest.mark.parametrize("kind", TRANSFORMS.names())
def test_every_transform_keeps_the_updates_names_and_shapes(kind):
    import torch

    update = {"w": torch.randn(4, 3), "b": torch.randn(4), "steps": torch.tensor(3)}
    defended = apply_defense(update, DEFENSE_SETTINGS.get(kind)(), noise_generator(0, 0, 1))
    assert list(defended) == list(update)
    assert all(defended[k].shape == update[k].shape for k in update)
    assert torch.equal(defended["steps"], update["steps"])  # integer buffers pass through


def test_settings_classes_are_registered_under_their_own_kind():
    for registry in (PARTITION_SETTINGS, DEFENSE_SETTINGS):
        for name, settings in zip(registry.names(), registry.values(), strict=True):
            assert issubclass(settings, Strict) and kind_of(settings) == name


def test_a_registry_refuses_a_second_entry_of_the_same_name():
    registry: Registry[int] = Registry("thing")
    registry.add("a", 1)
    with pytest.raises(ValueError, match="thing 'a' is already registered"):
        registry.add("a", 2)
