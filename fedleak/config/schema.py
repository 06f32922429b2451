"""The scenario schema: typed, strict (unknown keys are errors), every default documented here.

A scenario YAML has these sections; everything but ``data``, ``clients`` and ``training`` is optional::

    name: hospitals          # used in the run directory's name (default: the file's stem)
    seed: 0                  # every random choice (partitions, batches, init, attacks) derives from it
    device: auto             # auto | cpu | cuda — attackers use a GPU when one exists and device is auto
    data: …                  # DataConfig
    clients: …               # ClientsConfig
    training: …              # TrainingConfig
    attacks: […]             # AttackConfig list (empty: train only)
    threat_model: …          # fedleak.types.ThreatModel
    executor: …              # ExecutorConfig
    output: …                # OutputConfig
    arms: […]                # ArmConfig list: one federation per defense, compared (fedleak.drivers.arms)
    membership: …            # MembershipConfig: membership inference on every scheduled update
    audit: …                 # AuditConfig: one-run DP audit with canaries (fedleak.privacy_audit)
"""

from __future__ import annotations

import functools
import operator
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fedleak.config.errors import one_line
from fedleak.defaults import DEFAULT_SUCCESS_PSNR
from fedleak.defenses import AnyDefense, NoDefense
from fedleak.fence import folder_name_problem
from fedleak.registry import Registry
from fedleak.types import ThreatModel

DatasetName = Literal["mnist", "fashion_mnist", "cifar10", "cifar100", "lfw"]
SourceName = Literal["bundled", "torchvision", "npz", "folder", "image"]
PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]


#: Bounds that keep a typo from allocating the machine away: image sides (gradient-leakage work uses ≤ 256 px) and
#: label spaces (LFW has 5 749 identities).
MAX_IMAGE_SIDE = 1024
MAX_CLASSES = 100_000


class Strict(BaseModel):
    # No NaN or infinity anywhere in a scenario: `lr: .inf` or `success_psnr: .nan` passed validation and then
    # failed every client; refused here with the field's name.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


#: The settings class of every ``clients.partition.kind``: the scenario's union is built from these, and the
#: implementations (fedleak/data/partitioning.py) are checked against them by a test. Defenses register settings and
#: hooks in one object, in :data:`fedleak.defenses.DEFENSES`.
PARTITION_SETTINGS: Registry[type[Strict]] = Registry("partition")


def kind_of(settings: type[Strict]) -> str:
    """The ``kind`` tag a settings class declares (its ``kind: Literal[...]`` field)."""
    return get_args(settings.model_fields["kind"].annotation)[0]


def settings_of(registry: Registry[type[Strict]]):
    """Class decorator: register a settings class under its own ``kind``."""
    def register(settings: type[Strict]) -> type[Strict]:
        registry.add(kind_of(settings), settings)
        return settings

    return register


def tagged_union(registry: Registry[type[Strict]]) -> Any:
    """The discriminated union (on ``kind``) of every settings class in ``registry``."""
    return Annotated[functools.reduce(operator.or_, registry.values()), Field(discriminator="kind")]


class DataConfig(Strict):
    dataset: DatasetName
    #: bundled: real images installed from PyPI packages (offline); torchvision: the standard loaders from
    #: ``path``; npz: arrays ``x`` (uint8 N×H×W[×3]) and ``y``; folder: one sub-folder per class;
    #: image: a single image file with ``label``.
    source: SourceName = "bundled"
    path: str | None = None
    download: bool = False
    #: train | test. Default: the training split when the source has one, else the test split
    #: (the bundled CIFAR/Fashion-MNIST images are test images; bundled MNIST has both).
    split: Literal["train", "test"] | None = None
    #: Resize images to this side length (default: the dataset's native size); at most 1024.
    image_size: Annotated[int, Field(gt=0, le=MAX_IMAGE_SIDE)] | None = None
    #: Class index of the single image (source ``image`` only); below 100 000.
    label: Annotated[int, Field(ge=0, lt=MAX_CLASSES)] | None = None
    #: Images whose height and width differ: ``crop`` their central square (said in the source's description),
    #: or ``refuse`` them. Never stretched.
    non_square: Literal["crop", "refuse"] = "crop"
    #: Size of the label space, i.e. of the model's head (default: the dataset's; LFW's comes from the source).
    #: A single LFW image has no source to count classes from and needs it; every label must lie below it.
    num_classes: Annotated[int, Field(ge=2, le=MAX_CLASSES)] | None = None
    #: Share of the images held out for the global model's evaluation (never in any client's shard).
    eval_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.2

    @model_validator(mode="after")
    def _source_needs_path(self) -> DataConfig:
        if self.source in ("npz", "folder", "image") and not self.path:
            raise ValueError(f"source {self.source!r} needs data.path")
        if self.source == "image" and self.label is None:
            raise ValueError("source 'image' needs data.label (the class index of the image)")
        return self


@settings_of(PARTITION_SETTINGS)
class IidPartition(Strict):
    kind: Literal["iid"] = "iid"


@settings_of(PARTITION_SETTINGS)
class DirichletPartition(Strict):
    kind: Literal["dirichlet"]
    alpha: PositiveFloat = 0.5


@settings_of(PARTITION_SETTINGS)
class ShardPartition(Strict):
    """Sort by label, cut into ``count × shards_per_client`` shards, deal them out (McMahan et al.)."""

    kind: Literal["shards"]
    shards_per_client: PositiveInt = 2


@settings_of(PARTITION_SETTINGS)
class SizesPartition(Strict):
    """Client i gets ``sizes[i]`` images: IID, or with ``alpha`` each client's labels follow its own
    Dirichlet(alpha) mix of the classes (smaller alpha, fewer classes per client)."""

    kind: Literal["sizes"]
    sizes: list[PositiveInt]
    alpha: PositiveFloat | None = None


Partition = tagged_union(PARTITION_SETTINGS)


#: A client's defense: any registered defense, chosen by its ``kind`` (see :mod:`fedleak.defenses`).
Defense = AnyDefense


class ClientOverride(Strict):
    """Per-client training settings, so one run compares hospitals that train (or defend) differently."""

    client: Annotated[int, Field(ge=0)]
    batch_size: PositiveInt | None = None
    local_steps: PositiveInt | None = None
    local_epochs: PositiveInt | None = None
    lr: PositiveFloat | None = None
    defense: Defense | None = None


class ClientsConfig(Strict):
    count: PositiveInt
    #: Clients that train in each round, drawn anew every round from (seed, round), as Flower's ``fraction_train``
    #: samples nodes (default: all). Every client still evaluates the global model on its held-out slice.
    per_round: PositiveInt | None = None
    partition: Partition = Field(default_factory=IidPartition)
    overrides: list[ClientOverride] = []

    @model_validator(mode="after")
    def _overrides_in_range(self) -> ClientsConfig:
        if self.per_round is not None and self.per_round > self.count:
            raise ValueError(f"per_round is {self.per_round} but there are only {self.count} clients (clients.count)")
        for override in self.overrides:
            if override.client >= self.count:
                raise ValueError(f"override for client {override.client}, but clients are 0..{self.count - 1}")
        if isinstance(self.partition, SizesPartition) and len(self.partition.sizes) != self.count:
            raise ValueError(f"partition.sizes has {len(self.partition.sizes)} entries for {self.count} clients")
        return self


class TrainingConfig(Strict):
    rounds: PositiveInt = 3
    #: gradient: each client sends the gradient of one batch (FedSGD);
    #: local_steps: each client runs ``local_steps`` SGD steps on one batch and sends its weights (FedAvg);
    #: epochs: each client runs ``local_epochs`` passes over its whole shard in shuffled minibatches of its
    #: ``batch_size`` (order from seed, client and round) and sends its weights (FedAvg as federations run it).
    update: Literal["gradient", "local_steps", "epochs"] = "gradient"
    local_steps: PositiveInt = 1
    #: Passes over the shard per round (``update: epochs`` only; default 1 there).
    local_epochs: PositiveInt | None = None
    #: Client learning rate (local steps) and the server's step on the averaged gradient (FedSGD).
    lr: PositiveFloat = 0.1
    batch_size: PositiveInt = 8
    model: str = "lenet"
    #: relu | leaky_relu | sigmoid | tanh; default: the model's paper default.
    activation: str | None = None
    #: paper: the model's own initialisation (DLG's uniform(−0.5, 0.5) for lenet); default: PyTorch's;
    #: checkpoint: a state_dict file at ``checkpoint``.
    init: Literal["paper", "default", "checkpoint"] = "paper"
    checkpoint: str | None = None
    #: What every client applies before its update leaves (client overrides may differ), see the Defense models.
    defense: Defense = Field(default_factory=NoDefense)
    #: Secure aggregation: the server sees only each round's num-examples-weighted mean of the updates, so attacks
    #: run once per round on that aggregate, whose batch is every client's batch (rows with client −1). The
    #: server's view is modelled; the masking protocol itself is not run (see server/secure_aggregation.py).
    secure_aggregation: bool = False

    @model_validator(mode="after")
    def _checkpoint_path(self) -> TrainingConfig:
        if self.init == "checkpoint" and not self.checkpoint:
            raise ValueError("init 'checkpoint' needs training.checkpoint (a state_dict file)")
        if self.local_epochs is not None and self.update != "epochs":
            raise ValueError(f"local_epochs applies to update 'epochs' only, but update is {self.update!r}; "
                             f"remove local_epochs or set update: epochs")
        return self

    @property
    def epochs(self) -> int:
        """Passes over the shard per round under ``update: epochs`` (1 when not set)."""
        return self.local_epochs or 1


class AttackConfig(Strict):
    name: str
    #: Passed to the attack's config dataclass; unknown parameters are errors.
    params: dict[str, int | float | str | bool | list[int] | list[float] | None] = {}
    #: "all" or the 1-based rounds to attack.
    rounds: Literal["all"] | list[PositiveInt] = "all"
    #: "all" or the client ids to attack.
    clients: Literal["all"] | list[Annotated[int, Field(ge=0)]] = "all"
    #: The most images this attack will try to reconstruct from one update (an epoch update covers the client's
    #: whole shard); a larger update gets a "skipped" row with the reason instead of an hour-long attempt.
    max_images: PositiveInt = 64
    #: Attack only a share (``sample``) or a number (``count``) of each round's scheduled updates, drawn
    #: reproducibly from (seed, round, attack): a large federation watched without attacking every update.
    sample: Annotated[float, Field(gt=0, le=1)] | None = None
    count: PositiveInt | None = None

    @model_validator(mode="after")
    def _one_way_to_sample(self) -> AttackConfig:
        if self.sample is not None and self.count is not None:
            raise ValueError("give sample (a share of each round's updates) or count (a number of them), not both")
        return self


class MembershipConfig(Strict):
    """Membership inference on every scheduled update, whatever its size (``attacks[].max_images`` caps
    reconstruction only). For each update the server is granted a candidate set — the records the client trained on
    that round and as many non-members from the held-out split (``data.eval_fraction``), drawn from (seed, round,
    client), shuffled — without knowing which are which (fedleak/data/candidates.py); each attack scores every
    candidate (fedleak/attacks/membership.py) and the scorer writes one membership.csv row per attack."""

    #: Membership attacks to run (names from ``fedleak.attacks.membership.list_membership_attacks``).
    attacks: list[str] = ["gradient_alignment", "loss_difference"]
    #: "all" or the 1-based rounds to attack.
    rounds: Literal["all"] | list[PositiveInt] = "all"
    #: "all" or the client ids to attack.
    clients: Literal["all"] | list[Annotated[int, Field(ge=0)]] = "all"
    #: At most this many of an update's records are candidates, with as many non-members (default: every record,
    #: capped by the held-out split's size so that members and non-members stay equal in number).
    max_members: PositiveInt | None = None

    @field_validator("attacks")
    @classmethod
    def _some_attack(cls, attacks: list[str]) -> list[str]:
        if not attacks:
            raise ValueError("name at least one membership attack, or remove the membership section")
        return attacks


class AuditConfig(Strict):
    """The one-run DP audit (Steinke, Nasr & Jagielski 2023, arXiv 2305.08846; fedleak/privacy_audit.py): each
    audited client gets ``canaries`` records from the held-out split (fedleak/canaries.py), each added to its shard
    with probability ½ from the seed before training (the drawn canaries leave the held-out split, so evaluation and
    membership non-members never see them). After ``round`` the server scores every canary on that client's update
    (fedleak/canary_scores.py), guesses inclusion for the most confident and writes the empirical lower bound on ε at
    95 % per client to audit.csv, beside the accountant's ε. Off when absent."""

    #: Canaries per audited client (each in its shard with probability ½).
    canaries: PositiveInt
    #: ``mislabelled``: held-out images with a label drawn from the other classes (audits strongest, measured in
    #: bench/README.md); ``held_out``: held-out images with their true labels.
    kind: Literal["mislabelled", "held_out"] = "mislabelled"
    #: Guesses on the most confident canaries, half "in" and half "out" (default: every canary).
    guesses: PositiveInt | None = None
    #: "all" or the client ids to audit.
    clients: Literal["all"] | list[Annotated[int, Field(ge=0)]] = "all"
    #: The 1-based round whose updates are audited (default: the last). One round, fixed before the audit sees
    #: anything, so the 95 % is spent once per client.
    round: PositiveInt | None = None

    @model_validator(mode="after")
    def _guesses_fit(self) -> AuditConfig:
        if self.guesses is not None and self.guesses > self.canaries:
            raise ValueError(f"guesses: {self.guesses} guesses need at least as many canaries "
                             f"(canaries: {self.canaries})")
        return self


class ExecutorConfig(Strict):
    #: auto: a Ray actor pool inside Flower's simulation, in-process elsewhere; local: in-process; ray: Ray.
    kind: Literal["auto", "local", "ray"] = "auto"
    #: Attacker actors (Ray) and the cap on attacks in flight.
    workers: PositiveInt = 2
    max_in_flight: PositiveInt = 8
    #: An attack running longer is recorded as failed with reason "timeout".
    timeout_s: PositiveFloat = 600
    #: An existing Ray cluster to run on (HOST:PORT of its head, "auto" or ray://HOST:PORT); default: Ray's
    #: RAY_ADDRESS variable, else the Ray instance Flower starts on this machine. See fedleak/runtime/cluster.py.
    address: str | None = None
    #: The custom Ray resource every attacker actor asks one unit of, so it lands on the nodes offering it.
    resource: str = "fedleak_attacker"
    #: GPU share of each attacker actor when CUDA is used (default: 1 / workers).
    gpus_per_attack: Annotated[float, Field(gt=0, le=1)] | None = None


class OutputConfig(Strict):
    #: Run directory; default runs/<name>-<timestamp>/.
    dir: str | None = None
    #: PSNR (dB) at or above which an image counts as reconstructed.
    success_psnr: float = DEFAULT_SUCCESS_PSNR
    #: Save true-vs-reconstructed grids per round.
    save_images: bool = True
    #: Write the global weights after every round to ``checkpoints/round_NNN.pt`` (a state_dict), for
    #: ``training.init: checkpoint`` and ``fedleak attack --checkpoint``.
    checkpoints: bool = False


class ArmConfig(Strict):
    """One arm of a defense comparison: the same federation (seed, data, model, attack schedule) run again with
    ``defense`` applied by every client and, optionally, other ``training`` fields changed. Each arm writes an
    ordinary run directory ``arms/<name>/``."""

    #: Names the arm's folder, so letters, digits, ``_``, ``.`` and ``-`` only.
    name: str
    defense: Defense
    #: Training fields that differ in this arm (any field of TrainingConfig but ``defense``).
    training: dict[str, Any] = {}

    @field_validator("name")
    @classmethod
    def _folder_name(cls, name: str) -> str:
        problem = folder_name_problem(name)
        if problem:
            raise ValueError(f"arm name {problem}: it names the folder arms/<name>/")
        return name

    @field_validator("training")
    @classmethod
    def _training_fields(cls, training: dict[str, Any]) -> dict[str, Any]:
        if "defense" in training:
            raise ValueError("defense: set the arm's defense in arms[].defense, not in its training overrides")
        unknown = sorted(set(training) - set(TrainingConfig.model_fields))
        if unknown:
            raise ValueError(f"unknown training field {unknown[0]!r}; choose from: "
                             f"{', '.join(k for k in TrainingConfig.model_fields if k != 'defense')}")
        try:
            TrainingConfig.model_validate(training)
        except ValidationError as exc:
            # Field-level problems only: checks across fields need the scenario's training (Scenario does them).
            if any(error["loc"] for error in exc.errors()):
                raise ValueError(one_line(exc)) from None
        return training


class Scenario(Strict):
    #: Names the run folder runs/<name>-<timestamp>/, so one plain folder name (fedleak.fence).
    name: str | None = None
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data: DataConfig
    clients: ClientsConfig
    training: TrainingConfig
    attacks: list[AttackConfig] = []
    threat_model: ThreatModel = Field(default_factory=ThreatModel)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    #: Defenses compared on the same federation: one run per arm into ``arms/<name>/`` (fedleak.drivers.arms).
    arms: list[ArmConfig] = []
    #: Membership inference on every scheduled update (None: not run).
    membership: MembershipConfig | None = None
    #: One-run DP audit with canaries (None: not run).
    audit: AuditConfig | None = None

    @field_validator("name")
    @classmethod
    def _run_folder_name(cls, name: str | None) -> str | None:
        problem = folder_name_problem(name) if name is not None else None
        if problem:
            raise ValueError(f"{problem}: it names the run folder runs/<name>-<timestamp>/")
        return name

    @field_validator("arms")
    @classmethod
    def _unique_arm_names(cls, arms: list[ArmConfig]) -> list[ArmConfig]:
        seen: dict[str, int] = {}
        for i, arm in enumerate(arms):
            if arm.name in seen:
                raise ValueError(f"duplicate arm name {arm.name!r} (arms[{seen[arm.name]}] and arms[{i}]); "
                                 "each arm needs its own name, it names the folder arms/<name>/")
            seen[arm.name] = i
        return arms

    @model_validator(mode="after")
    def _arms_fit(self) -> Scenario:
        if not self.arms:
            return self
        # Each arm's defense is every client's: a second source of defenses would be silently overridden.
        if not isinstance(self.training.defense, NoDefense):
            raise ValueError("training.defense: a scenario with arms takes each arm's defense; remove "
                             "training.defense")
        for o in self.clients.overrides:
            if o.defense is not None:
                raise ValueError(f"clients.overrides (client {o.client}).defense: a scenario with arms takes each "
                                 "arm's defense for every client; remove the override's defense")
        for i, arm in enumerate(self.arms):
            try:
                self.arm_training(arm)
            except ValidationError as exc:
                raise ValueError(f"arms[{i}].training: {one_line(exc)}") from None
        return self

    def arm_training(self, arm: ArmConfig) -> TrainingConfig:
        """The training settings of one arm: this scenario's, the arm's overrides and defense on top."""
        merged = {**self.training.model_dump(), **arm.training, "defense": arm.defense}
        return TrainingConfig.model_validate(merged)

    def client_settings(self, client: int) -> tuple[int, int, float]:
        """(batch_size, local_steps, lr) of one client after its overrides."""
        t = self.training
        batch_size, steps, lr = t.batch_size, t.local_steps, t.lr
        for o in self.clients.overrides:
            if o.client == client:
                batch_size = o.batch_size or batch_size
                steps = o.local_steps or steps
                lr = o.lr or lr
        return batch_size, steps, lr

    def client_epochs(self, client: int) -> int:
        """Passes over the shard per round of one client (``update: epochs``) after its override."""
        for o in self.clients.overrides:
            if o.client == client and o.local_epochs is not None:
                return o.local_epochs
        return self.training.epochs

    def defenses(self) -> list[Defense]:
        """Every defense a client of this scenario applies (its arms' aside), each once."""
        defenses = [self.training.defense] + [o.defense for o in self.clients.overrides if o.defense is not None]
        return list({d.model_dump_json(): d for d in defenses}.values())

    def client_defense(self, client: int) -> Defense:
        """The defense one client applies: its override, else the training default."""
        for o in self.clients.overrides:
            if o.client == client and o.defense is not None:
                return o.defense
        return self.training.defense
