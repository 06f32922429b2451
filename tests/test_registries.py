"""Every extension point is a registry, and each registry agrees with the scenario schema that names its entries."""

from __future__ import annotations

from typing import get_args

import numpy as np
import pytest

from fedleak.config.schema import PARTITION_SETTINGS, ClientsConfig, SourceName, Strict, TrainingConfig, kind_of
from fedleak.data import DATA_SOURCES, PARTITIONS, partition
from fedleak.defenses import DEFENSES, Defense, apply_defense, noise_generator
from fedleak.defenses.base import kind_of as defense_kind_of
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


@pytest.mark.parametrize("kind", DEFENSES.names())
def test_the_schema_validates_every_registered_defense_into_its_own_class(kind):
    training = TrainingConfig.model_validate({"defense": {"kind": kind}})
    assert type(training.defense) is DEFENSES.get(kind)
    assert TrainingConfig.model_validate_json(training.model_dump_json()).defense == training.defense


@pytest.mark.parametrize("kind", [k for k in DEFENSES.names() if DEFENSES.get(k)().transforms_reply()])
def test_every_transform_keeps_the_updates_names_and_shapes(kind):
    import torch

    update = {"w": torch.randn(4, 3), "b": torch.randn(4), "steps": torch.tensor(3)}
    defended = apply_defense(update, DEFENSES.get(kind)(), noise_generator(0, 0, 1))
    assert list(defended) == list(update)
    assert all(defended[k].shape == update[k].shape for k in update)
    assert torch.equal(defended["steps"], update["steps"])  # integer buffers pass through


def test_settings_classes_are_registered_under_their_own_kind():
    for name, settings in zip(PARTITION_SETTINGS.names(), PARTITION_SETTINGS.values(), strict=True):
        assert issubclass(settings, Strict) and kind_of(settings) == name
    for name, defense in zip(DEFENSES.names(), DEFENSES.values(), strict=True):
        assert issubclass(defense, Defense) and defense_kind_of(defense) == name


def test_a_registry_refuses_a_second_entry_of_the_same_name():
    registry: Registry[int] = Registry("thing")
    registry.add("a", 1)
    with pytest.raises(ValueError, match="thing 'a' is already registered"):
        registry.add("a", 2)
