"""Membership by loss difference: a candidate's loss under the global weights minus its loss under the client's new
weights.

The loss-threshold attack of Yeom, Giacomelli, Fredrikson & Jha, "Privacy Risk in Machine Learning: Analyzing the
Connection to Overfitting", CSF 2018 (arXiv 1709.01604), calibrated per record as in Watson, Guo, Cormode &
Sablayrolles, "On the Importance of Difficulty Calibration in Membership Inference Attacks", ICLR 2022
(arXiv 2111.08440): the reference model here is the global model the client started from, so the score is how much
the client's own training lowered the record's loss. A record the client trained on had its loss pushed down.

Algorithm (per observed update):
1. w_new ← the client's weights: the update itself for local-steps and epoch updates (FedAvg replies carry the
   weights); for a FedSGD gradient, w_old − lr·g, the step the server itself takes (needs lr, granted by
   ``local_hparams_known``).
2. score(x, y) ← loss(f_{w_old}(x), y) − loss(f_{w_new}(x), y), every candidate at once (vmap), in chunks.

Departure from Watson et al.: their reference models are shadow models trained without the record; here the only
reference is the global model of the same round, which the honest-but-curious server has for free.
"""

from __future__ import annotations

import torch

from fedleak.attacks.membership import (
    MembershipAttack,
    in_chunks,
    on_device,
    per_example_losses,
    register_membership_attack,
)
from fedleak.types import Observation


def new_weights(observation: Observation) -> dict[str, torch.Tensor]:
    """The client's weights after its round, as far as the observation gives them."""
    if observation.kind != "gradient":
        return {**observation.global_weights, **observation.update}
    lr = observation.metadata.get("lr")
    if lr is None:
        raise ValueError("loss difference on a gradient update needs the step's learning rate; it is not granted "
                         "(threat_model.local_hparams_known is false)")
    return {k: v - float(lr) * observation.update[k] if k in observation.update else v
            for k, v in observation.global_weights.items()}


@register_membership_attack("loss_difference")
class LossDifference(MembershipAttack):
    paper = ("Yeom et al., CSF 2018 (arXiv 1709.01604), calibrated as Watson et al., ICLR 2022 "
             "(arXiv 2111.08440)")

    def score(self, observation: Observation, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        model = observation.build_model().to(self.device)
        before = on_device(observation.global_weights, self.device)
        after = on_device(new_weights(observation), self.device)

        def difference(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return per_example_losses(model, before, x, y) - per_example_losses(model, after, x, y)

        return in_chunks(images, labels, self.config.chunk, self.device, difference)
