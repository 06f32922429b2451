"""The wire format of a train reply: which record carries what, so the client and the server agree in one place.

A train reply holds exactly one ArrayRecord (the update) and one MetricRecord (``num-examples``), as Flower's
aggregators require, plus two ConfigRecords: public metadata a real server would see, and an audit record with the
batch's sample indices (never pixels) that only the scorer reads. The interceptor drops the audit record from
everything an attack receives.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flwr.app import ConfigRecord

#: What the server sends: the global weights, and a config holding ``server-round`` (Flower's strategies add it).
SERVER_ARRAYS = "arrays"
SERVER_CONFIG = "config"

#: The update (gradient or weights after local steps).
UPDATE = "arrays"
#: ``num-examples`` (the aggregation weight) and the client's training loss.
METRICS = "metrics"
#: Public metadata: a :class:`PublicMetadata` record (client, round, how it trained, the defense, ε spent so far).
PUBLIC = "public"
#: Scorer-only: the indices of every image the client trained on this round, in training order (an epoch update
#: lists each image once per epoch).
AUDIT = "audit"

NUM_EXAMPLES = "num-examples"
TRAIN_LOSS = "train-loss"
EVAL_LOSS = "eval-loss"
EVAL_ACCURACY = "eval-accuracy"
INDICES = "indices"

#: A query reply: the record naming the client, and its key (the server maps node ids to clients with it).
IDENTITY = "identity"
CLIENT_ID = "client"


#: What simulating a client's epochs needs (an attack on an epoch update), besides num_examples.
EPOCH_SIMULATION = ("lr", "local_epochs", "batch_size")


def _not_a_field(key: str) -> str:
    return f"public metadata has no field {key!r}; the fields are: {', '.join(PublicMetadata.field_names())}"


def _public(cast: type, grant: str | None = None) -> Any:
    """A field of :class:`PublicMetadata`: how it reads back from a record, and the threat-model grant (a
    :class:`~fedleak.types.ThreatModel` flag) without which an attacker does not see it."""
    return field(default=None, metadata={"cast": cast, "grant": grant})


@dataclass(frozen=True, eq=False)
class PublicMetadata(Mapping[str, Any]):
    """What a train reply makes public about how the client trained: the record a real server sees.

    A field is None when it was not published or, in an :class:`~fedleak.types.Observation`, when the threat model
    does not grant it (:meth:`visible_to`). The field names are the ConfigRecord's keys; nothing else spells them.
    It reads like a mapping of its set fields too (``"lr" in meta``, ``dict(meta)``), but asking for a name that is
    not a field raises instead of returning None.
    """

    client: int | None = _public(int)
    round: int | None = _public(int)
    #: gradient | local_steps | epochs
    update_kind: str | None = _public(str)
    #: Under DP-SGD and for epoch updates the nominal batch size (a Poisson batch's size stays private).
    batch_size: int | None = _public(int, "batch_size_known")
    #: The round's SGD steps in total (an epoch update: E × batches per epoch).
    local_steps: int | None = _public(int, "local_hparams_known")
    local_epochs: int | None = _public(int, "local_hparams_known")
    lr: float | None = _public(float, "local_hparams_known")
    #: The aggregation weight, which every FedAvg server sees.
    num_examples: int | None = _public(int)
    #: The defense's label (``none`` without one).
    defense: str | None = _public(str)
    #: Privacy spent so far under a DP defense (a property of the mechanism, not of the data); unit: record | update.
    dp_epsilon: float | None = _public(float)
    dp_delta: float | None = _public(float)
    dp_unit: str | None = _public(str)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_config_record(cls, record: Mapping[str, Any]) -> PublicMetadata:
        """Read a reply's public record (Flower's ConfigRecord, or any mapping); an unknown key is an error."""
        unknown = sorted(set(record) - set(cls.field_names()))
        if unknown:
            raise KeyError(_not_a_field(unknown[0]))
        casts = {f.name: f.metadata["cast"] for f in fields(cls)}
        return cls(**{key: None if value is None else casts[key](value) for key, value in record.items()})

    @classmethod
    def of(cls, value: PublicMetadata | Mapping[str, Any] | None) -> PublicMetadata:
        """``value`` as a record: a record as it is, a mapping read like a ConfigRecord, None as an empty record."""
        if isinstance(value, PublicMetadata):
            return value
        return cls.from_config_record(value or {})

    def to_config_record(self) -> ConfigRecord:
        """The published fields as Flower's ConfigRecord (fields that are None are left out)."""
        # lazy (start-up): the kernel and the attacks import this module and run without Flower, which stays at
        # the edges (the ClientApp and the ServerApp)
        from flwr.app import ConfigRecord

        return ConfigRecord(dict(self))

    def dp_spend(self) -> dict[str, Any]:
        """ε, δ and unit ("record": DP-SGD, "update": local DP) as result rows name them; None and "" when not
        sent."""
        return {"dp_epsilon": self.dp_epsilon, "dp_delta": self.dp_delta, "dp_unit": self.dp_unit or ""}

    def missing(self, names: tuple[str, ...]) -> list[str]:
        """Which of the fields ``names`` are not set (not published, or not granted)."""
        return [name for name in names if self.get(name) is None]

    def visible_to(self, threat: Any) -> PublicMetadata:
        """This record with every field the threat model does not grant set to None."""
        grants = {f.name: f.metadata["grant"] for f in fields(self) if f.metadata["grant"]}
        return replace(self, **{name: None for name, grant in grants.items() if not getattr(threat, grant)})

    def __getitem__(self, key: str) -> Any:
        if key not in self.field_names():
            raise KeyError(_not_a_field(key))
        value = getattr(self, key)
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        """Like a dict's ``get``, but a name that is not a field raises KeyError instead of returning ``default``."""
        try:
            return self[key]
        except KeyError:
            if key not in self.field_names():
                raise
            return default

    def __iter__(self) -> Iterator[str]:
        return (name for name in self.field_names() if getattr(self, name) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"PublicMetadata({', '.join(f'{k}={v!r}' for k, v in self.items())})"
