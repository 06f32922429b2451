"""One scenario's data as the federation sees it: the image set, the held-out split, one shard per client.

Clients build it to draw their batches; the server builds the same object to look up ground truth from a reply's
audit indices (for the scorer only). Everything derives from the scenario's seed, so every process that builds it
gets identical shards and batches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fedleak.canaries import draw_canaries
from fedleak.config.schema import Scenario
from fedleak.data import client_batch_indices, load_images, partition, split_eval
from fedleak.errors import UserError
from fedleak.participation import sampled_clients
from fedleak.types import ModelSpec


class FederatedData:
    """The scenario's images split into a held-out evaluation set and one training shard per client."""

    def __init__(self, scenario: Scenario, base_dir: Path | None = None):
        self._batch_indices = client_batch_indices
        self.scenario = scenario
        self.images = load_images(scenario.data, base_dir=base_dir)
        labels = np.asarray(self.images.labels)
        train_idx, eval_idx = split_eval(len(self.images), scenario.data.eval_fraction, scenario.seed)
        self.eval_indices = np.asarray(eval_idx)
        self.shards = [np.asarray(s) for s in partition(labels, np.asarray(train_idx), scenario.clients, scenario.seed)]
        #: Audited client → its canaries (fedleak.canaries); empty without ``audit``.
        self.canaries: dict = {}
        #: Dataset index → the label a client trains that record with (mislabelled canaries); empty without audit.
        self.train_labels: dict[int, int] = {}
        self._canary_problem = ""
        if scenario.audit is not None:
            self._add_canaries(labels)

    def audited_clients(self) -> list[int]:
        """The clients the scenario's audit covers (none without ``audit``)."""
        audit = self.scenario.audit
        if audit is None:
            return []
        everyone = range(self.scenario.clients.count)
        return list(everyone) if audit.clients == "all" else [c for c in audit.clients if c in everyone]

    def _add_canaries(self, labels: np.ndarray) -> None:
        """Draw each audited client's canaries from the held-out split, add the included ones to its shard (with
        their training labels) and take every drawn canary out of the held-out split."""
        audit = self.scenario.audit
        clients = self.audited_clients()
        try:
            self.canaries = draw_canaries(self.eval_indices, labels[self.eval_indices], audit.canaries, clients,
                                          self.images.num_classes, self.scenario.seed, audit.kind)
        except ValueError as exc:
            self._canary_problem = str(exc)  # reported by check_canaries, before anything is written
            return
        drawn = []
        for client, canaries in self.canaries.items():
            indices, train_labels = canaries.inserted()
            self.shards[client] = np.concatenate([self.shards[client], indices])
            self.train_labels.update(zip(indices.tolist(), train_labels.tolist(), strict=True))
            drawn.append(canaries.indices)
        self.eval_indices = np.setdiff1d(self.eval_indices, np.concatenate(drawn), assume_unique=True)

    def model_spec(self) -> ModelSpec:
        training = self.scenario.training
        return ModelSpec(
            name=training.model,
            in_channels=self.images.channels,
            image_size=self.images.image_size,
            num_classes=self.images.num_classes,
            activation=training.activation,
        )

    def batch_indices(self, client: int, server_round: int) -> np.ndarray:
        """Indices of the batch ``client`` trains on in ``server_round``, reproducible from (seed, client, round)."""
        batch_size, _, _ = self.scenario.client_settings(client)
        shard = self.shards[client]
        if len(shard) == 0:
            raise ValueError(f"client {client} has an empty shard; give it data (clients.partition) or fewer clients")
        return np.asarray(self._batch_indices(shard, batch_size, self.scenario.seed, client, server_round))

    def check_batches(self) -> None:
        """Fail early, in the launching process, when a client's shard cannot fill its batch (or, training in
        epochs, is empty). Inside the simulation the same error would only surface as a failed client reply.
        """
        for client in range(self.scenario.clients.count):
            if self.scenario.training.update != "epochs":
                self.batch_indices(client, 1)
            elif len(self.shards[client]) == 0:
                raise UserError(f"client {client} has no training images; change clients.partition or clients.count")

    def check_candidates(self) -> None:
        """Membership draws its non-members from the held-out split: fail early, before anything is written, when
        that split is empty or smaller than ``membership.max_members``."""
        membership = self.scenario.membership
        if membership is None:
            return
        pool, total, fraction = len(self.eval_indices), len(self.images), self.scenario.data.eval_fraction
        if pool == 0:
            raise UserError(f"membership: non-members come from the held-out split, which is empty (data.eval_fraction "
                            f"{fraction} of {total} images); raise data.eval_fraction")
        if membership.max_members is not None and membership.max_members > pool:
            raise UserError(f"membership.max_members: {membership.max_members} members need as many non-members, but "
                            f"the held-out split has {pool} images (data.eval_fraction {fraction} of {total}); lower "
                            f"membership.max_members or raise data.eval_fraction")

    def check_canaries(self) -> None:
        """The audit's canaries come from the held-out split and join a shard: fail early, before anything is
        written, when the split cannot give every audited client its canaries or a client's shard is smaller than its
        canaries (the audit is of records in an ordinary shard, not of a shard made of canaries)."""
        audit = self.scenario.audit
        if audit is None:
            return
        if self._canary_problem:
            raise UserError(f"audit.canaries: {self._canary_problem} (data.eval_fraction "
                            f"{self.scenario.data.eval_fraction} of {len(self.images)} images); lower audit.canaries, "
                            f"audit fewer clients or raise data.eval_fraction")
        for client, canaries in self.canaries.items():
            own = len(self.shards[client]) - int(canaries.included.sum())
            if audit.canaries > own:
                raise UserError(f"audit.canaries: {audit.canaries} canaries are more than client {client}'s shard "
                                f"of {own} images can take; lower audit.canaries or audit other clients")

    def get_training(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, labels) as a client trains on them: a mislabelled canary carries its canary label."""
        images, labels = self.get(indices)
        if self.train_labels:
            labels = torch.as_tensor([self.train_labels.get(int(i), int(y)) for i, y in zip(indices, labels.tolist(),
                                                                                            strict=True)],
                                     dtype=torch.int64)
        return images, labels

    def eval_indices_of(self, client: int, server_round: int) -> np.ndarray:
        """This client's equal slice of the held-out set; the weighted mean over the evaluating clients covers all
        of it. With ``clients.per_round`` only the round's sampled clients evaluate, the i-th of them slice i."""
        clients = self.scenario.clients
        if clients.per_round is None or clients.per_round >= clients.count:
            return np.array_split(self.eval_indices, clients.count)[client]
        chosen = sampled_clients(clients.count, clients.per_round, self.scenario.seed, server_round)
        if client not in chosen:
            return self.eval_indices[:0]
        return np.array_split(self.eval_indices, clients.per_round)[chosen.index(client)]

    def get(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(images B×C×H×W float in [0, 1], labels int64) at ``indices``."""
        images, labels = self.images.get(np.asarray(indices, dtype=np.int64))
        return torch.as_tensor(images, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.int64)


#: The scenarios' data loaded in this process, newest last: (scenario id, base_dir) → data. The data holds its
#: scenario, so an id stays valid while its entry lives.
_LOADED: dict[tuple[int, str | None], FederatedData] = {}
_KEEP = 4


def federated_data(scenario: Scenario, base_dir: Path | None = None) -> FederatedData:
    """The scenario's data, loaded once per process and scenario object (Flower runs many ClientApp calls in one
    worker, all with the same validated scenario: see :func:`fedleak.config.loader.scenario_from_json`)."""
    key = (id(scenario), str(base_dir) if base_dir else None)
    data = _LOADED.get(key)
    if data is None or data.scenario is not scenario:
        data = _LOADED[key] = FederatedData(scenario, base_dir)
        while len(_LOADED) > _KEEP:
            _LOADED.pop(next(iter(_LOADED)))
    return data
