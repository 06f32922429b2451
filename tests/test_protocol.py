"""The public metadata of a train reply: one typed record, written by the client and read by the server, the
threat model's grants and the attacks through its fields."""

from __future__ import annotations

import pickle

import pytest
from flwr.app import ConfigRecord

from fedleak.protocol import PublicMetadata
from fedleak.types import ThreatModel


def test_the_record_travels_through_a_config_record_unchanged():
    meta = PublicMetadata(client=2, round=3, update_kind="epochs", batch_size=4, local_steps=6, local_epochs=2,
                          lr=0.05, num_examples=12, defense="none", dp_epsilon=1.5, dp_delta=1e-5, dp_unit="record")
    record = meta.to_config_record()
    assert isinstance(record, ConfigRecord)
    back = PublicMetadata.from_config_record(record)
    assert back == meta and back.lr == 0.05 and back.local_epochs == 2
    assert pickle.loads(pickle.dumps(back)) == meta


def test_unset_fields_are_left_out_of_the_record():
    record = PublicMetadata(client=0, round=1).to_config_record()
    assert dict(record) == {"client": 0, "round": 1}


def test_a_misspelt_key_is_an_error_not_a_silent_none():
    with pytest.raises(KeyError, match="batch_sise"):
        PublicMetadata.from_config_record({"client": 0, "batch_sise": 2})
    meta = PublicMetadata(batch_size=2)
    with pytest.raises(KeyError, match="no field 'batch_sise'"):
        meta.get("batch_sise")
    assert meta.get("lr") is None and meta["batch_size"] == 2


def test_the_grants_hide_exactly_the_fields_that_name_them():
    meta = PublicMetadata(client=1, round=2, batch_size=3, local_steps=4, local_epochs=1, lr=0.1, num_examples=9)
    hidden = meta.visible_to(ThreatModel(local_hparams_known=False, batch_size_known=False))
    assert dict(hidden) == {"client": 1, "round": 2, "num_examples": 9}
    assert meta.visible_to(ThreatModel(local_hparams_known=True, batch_size_known=True)) == meta
    assert hidden.missing(("lr", "batch_size", "num_examples")) == ["lr", "batch_size"]
