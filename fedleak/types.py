"""The types every part shares: what the server sees, what an attack returns, one result row.

Ground truth never appears in :class:`Observation`. The scorer joins it later from the audit indices.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict

from fedleak.models import get_model
from fedleak.protocol import PublicMetadata

UpdateKind = Literal["gradient", "local_steps", "epochs"]
Status = Literal["ok", "failed", "skipped"]


class ThreatModel(BaseModel):
    """What the honest-but-curious server is granted beyond the update itself.

    Every flag is written into each result row, so a table always says under which assumptions it holds.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The server knows the labels of the client's batch (e.g. a label-only side channel).
    labels_known: bool = False
    #: The server knows the client's local learning rate and number of local steps.
    local_hparams_known: bool = True
    #: The server knows the batch size (with FedSGD it equals ``num-examples`` anyway).
    batch_size_known: bool = True


@dataclass(frozen=True)
class ModelSpec:
    """How to rebuild the global model: the architecture is public to the server that defines it."""

    name: str
    in_channels: int
    image_size: int
    num_classes: int
    activation: str | None = None

    def build(self) -> torch.nn.Module:
        return get_model(
            self.name,
            in_channels=self.in_channels,
            image_size=self.image_size,
            num_classes=self.num_classes,
            activation=self.activation,
        )


@dataclass(frozen=True)
class Observation:
    """Everything a real server sees of one client's reply in one round, plus explicit threat-model grants.

    ``update`` is exactly what the client sent, keyed like ``global_weights``:
    - kind ``gradient``: the gradient of the client's loss on one batch (FedSGD);
    - kind ``local_steps``: the client's weights after K local SGD steps on one batch (FedAvg);
    - kind ``epochs``: the client's weights after E passes over its n images in minibatches of B (FedAvg).
    ``metadata`` holds public metadata the threat model grants (round, client, batch_size, local_steps — the total
    SGD steps of the round —, local_epochs, lr, and num_examples, which every FedAvg server sees).
    ``labels`` is set only when ``threat.labels_known``.
    """

    model: ModelSpec
    global_weights: dict[str, torch.Tensor]
    update: dict[str, torch.Tensor]
    kind: UpdateKind
    threat: ThreatModel
    metadata: PublicMetadata = field(default_factory=PublicMetadata)
    labels: torch.Tensor | None = None

    def __post_init__(self) -> None:
        # A plain mapping (tests, benchmarks) is read like a reply's record: an unknown key is an error.
        object.__setattr__(self, "metadata", PublicMetadata.of(self.metadata))

    def build_model(self) -> torch.nn.Module:
        """The global model the client received, in eval-free train mode as the client used it."""
        model = self.model.build()
        model.load_state_dict(self.global_weights)
        return model

    def gradient(self) -> dict[str, torch.Tensor]:
        """The update as a gradient estimate.

        For ``gradient`` updates this is exact. For ``local_steps`` and ``epochs`` it is, for every trainable
        parameter, the pseudo-gradient ``(w_old - w_new) / (lr * K)`` (K: the round's SGD steps) when lr and K are
        granted, else the bare ``w_old - w_new`` (a direction only: fine for cosine matching, wrong in scale for
        Euclidean matching).
        """
        if self.kind == "gradient":
            return dict(self.update)
        scale = 1.0
        lr, steps = self.metadata.lr, self.metadata.local_steps
        if lr is not None and steps is not None:
            scale = 1.0 / (float(lr) * int(steps))
        # A FedAvg reply carries the whole state dict; buffers (BatchNorm statistics) are not trained by SGD.
        trained = {name for name, _ in self.model.build().named_parameters()}
        return {k: (self.global_weights[k] - self.update[k]) * scale for k in self.update if k in trained}

    @property
    def batch_size(self) -> int | None:
        return self.metadata.batch_size


@dataclass
class Reconstruction:
    """What an attack returns. Images are B×C×H×W in [0, 1] (or None when nothing was recovered)."""

    images: torch.Tensor | None
    labels: torch.Tensor | None = None
    status: Status = "ok"
    reason: str = ""
    seconds: float = 0.0
    diagnostics: dict[str, Any] = field(default_factory=dict)
    #: Snapshots of the images during optimisation, each B×C×H×W, for history figures.
    history: list[torch.Tensor] = field(default_factory=list)

    @classmethod
    def failed(cls, reason: str, seconds: float = 0.0, **diagnostics: Any) -> Reconstruction:
        return cls(images=None, status="failed", reason=reason, seconds=seconds, diagnostics=diagnostics)


@dataclass(frozen=True)
class ScoringContext:
    """The server's bookkeeping for one update: where it came from and how it was trained, plus the audit indices of
    the images it covers. It travels with an attack through the executor and back, and is never sent to an attack;
    only the scorer reads it (the indices look up ground truth)."""

    round: int
    client: int
    indices: tuple[int, ...]
    batch_size: int
    local_steps: int
    lr: float
    update_kind: str
    defense: str = "none"
    dp_epsilon: float | None = None
    dp_delta: float | None = None
    dp_unit: str = ""
    local_epochs: int | None = None


@dataclass
class LeakageRecord:
    """One tidy result row: one attack on one client's update in one round."""

    round: int
    client: int
    attack: str
    batch_size: int
    local_steps: int
    lr: float
    update_kind: str
    defense: str
    status: str
    reason: str
    #: Medians over the batch's B true images (fedleak.metrics.headline): a true image nobody reconstructed counts
    #: as not recovered (PSNR/SSIM −∞, MSE +∞); for an even B the worse middle image; PSNR ∞ only when every image
    #: is exact.
    psnr: float | None
    ssim: float | None
    mse: float | None
    label_accuracy: float | None
    success: float | None  # share of the B true images with PSNR >= the success threshold
    seconds: float
    labels_known: bool
    local_hparams_known: bool
    batch_size_known: bool
    psnr_per_image: str = ""  # space-separated, in the true batch's order after one-to-one matching; "-" not recovered
    #: Median over the batch (same rule as psnr) of the PSNR the dataset's mean image scores against each true image:
    #: a row at or below it shows no leakage. Empty when the scorer had no dataset to compare with.
    baseline_psnr: float | None = None
    baseline_psnr_per_image: str = ""  # space-separated, in the true batch's order
    #: Re-identification recall: share of the B true images that at least one of the R reconstructions
    #: re-identifies (its nearest candidate by SSIM in the gallery plus the batch is that image).
    reidentified: float | None = None
    reidentified_per_image: str = ""  # "1"/"0" per true image: re-identified by some reconstruction
    #: Re-identification precision: share of the R reconstructions that re-identify some true image.
    reidentified_precision: float | None = None
    #: The gallery re-identification was asked in (fixed per data source: which images) and its size, without the
    #: batch's own images, which join it per update (fedleak.metrics.gallery). Empty without a dataset.
    gallery: str = ""
    gallery_size: int | None = None
    #: R, the number of images the attack returned (all of them are scored; R > B: fedleak.metrics.pairing).
    reconstructions: int | None = None
    #: Cumulative ε the client had spent by this round, its δ, and its unit: "record" (DP-SGD, per training
    #: example) or "update" (local DP, per client update); all empty without DP.
    dp_epsilon: float | None = None
    dp_delta: float | None = None
    dp_unit: str = ""
    local_epochs: int | None = None  # passes over the shard per round (update kind "epochs"), else empty
    timestamp: float = field(default_factory=time.time)

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


#: The membership threat model, written into every membership.csv row.
MEMBERSHIP_THREAT = ("honest-but-curious server; sees the update, the global weights and the granted metadata; holds "
                     "a candidate set of the records trained on this round and as many held-out non-members, not "
                     "knowing which are which")


@dataclass
class MembershipRecord:
    """One membership.csv row: one membership attack on one client's update in one round, judged by the scorer.

    AUC with its 95 % interval (Hanley & McNeil); TPR at FPR 1 % and 0.1 % with the true positives (of ``members``)
    and false positives (of ``non_members``) they rest on and a 95 % Clopper–Pearson interval (fedleak.metrics.
    membership). ``trained``: distinct records the client trained on; ``pool``: the held-out records the
    non-members were drawn from (members are capped by it, so both classes stay equal in number).
    """

    round: int
    client: int
    attack: str
    status: str
    reason: str
    update_kind: str
    batch_size: int
    local_epochs: int | None
    defense: str
    trained: int
    pool: int
    members: int
    non_members: int
    auc: float | None = None
    auc_low: float | None = None
    auc_high: float | None = None
    tpr_at_1pct_fpr: float | None = None
    tpr_at_1pct_fpr_low: float | None = None
    tpr_at_1pct_fpr_high: float | None = None
    true_positives_at_1pct_fpr: int | None = None
    false_positives_at_1pct_fpr: int | None = None
    tpr_at_0_1pct_fpr: float | None = None
    tpr_at_0_1pct_fpr_low: float | None = None
    tpr_at_0_1pct_fpr_high: float | None = None
    true_positives_at_0_1pct_fpr: int | None = None
    false_positives_at_0_1pct_fpr: int | None = None
    seconds: float = 0.0
    paper: str = ""
    threat: str = MEMBERSHIP_THREAT
    labels_known: bool = False
    local_hparams_known: bool = True
    batch_size_known: bool = True
    dp_epsilon: float | None = None
    dp_delta: float | None = None
    dp_unit: str = ""
    timestamp: float = field(default_factory=time.time)

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


def columns() -> list[str]:
    """Column order of leakage.csv."""
    return list(LeakageRecord.__dataclass_fields__)


def membership_columns() -> list[str]:
    """Column order of membership.csv."""
    return list(MembershipRecord.__dataclass_fields__)
