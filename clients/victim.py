"""One client's round outside any federation, and what the server sees of it.

``fedleak attack``, the benchmarks and the tests build their victims here, with the same client update a ClientApp
runs (:mod:`fedleak.clients.update`) and the same threat-model filter the server applies (:mod:`fedleak.observe`).
The victim's images are its whole shard: one batch of all of them, unless it trains in epochs or its defense draws
the batches (DP-SGD's Poisson batches), as a simulation client would.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fedleak.clients.update import LocalTraining, client_update, round_batches, total_steps
from fedleak.defenses import Defense, NoDefense, noise_generator
from fedleak.observe import observe
from fedleak.protocol import PublicMetadata
from fedleak.types import ModelSpec, Observation, ThreatModel


def victim_observation(
    spec: ModelSpec,
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    plan: LocalTraining,
    *,
    defense: Defense | None = None,
    seed: int = 0,
    threat: ThreatModel | None = None,
) -> tuple[Observation, list[np.ndarray]]:
    """The server's view of one round of ``model``'s client on ``images``, and the batches (positions) it trained.

    ``model`` holds the weights the client received and is left unchanged; labels reach the attacker only when
    ``threat`` grants them.
    """
    defense = defense or NoDefense()
    n = len(images)
    if plan.kind == "epochs" or defense.draws_batches():
        positions = round_batches(np.arange(n), plan, seed, 0, 1, defense)
    else:
        positions = [np.arange(n)]
    batches = [(images[p], labels[p]) for p in positions]
    update, _ = client_update(model, batches, plan, defense, noise_generator(seed, 0, 1), n)
    epochs = plan.kind == "epochs"
    metadata = PublicMetadata(round=1, client=0, batch_size=plan.batch_size, local_steps=total_steps(plan, positions),
                              lr=plan.lr, local_epochs=plan.local_epochs if epochs else None,
                              num_examples=n if epochs else None)
    observation = observe(spec, model.state_dict(), update, plan.kind, threat or ThreatModel(), metadata=metadata,
                          labels=labels)
    return observation, positions
