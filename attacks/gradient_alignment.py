"""Membership by gradient alignment: the cosine between a candidate's gradient at the global weights and the update.

Li, Li & Ribeiro, "Effective Passive Membership Inference Attacks in Federated Learning against Overparameterized
Models", ICLR 2023 (openreview.net/forum?id=QsCSLPP55Ku), and Nasr, Shokri & Houmansadr, "Comprehensive Privacy
Analysis of Deep Learning", IEEE S&P 2019 (arXiv 1812.00910), which use the gradient of a target record as the
passive white-box signal. A record the client trained on contributed its gradient to the update, so its gradient
at the weights the client started from points along the update more than a record it did not train on.

Algorithm (per observed update):
1. g_upd ← the update as a gradient: the gradient itself (FedSGD), or the pseudo-gradient (w_old − w_new)/(lr·K) of a
   local-steps or epoch update (only its direction matters here, so lr and K need not be granted).
2. For every candidate (x, y): g(x, y) ← ∇_w loss(f_w(x), y) at the global weights w_old, all candidates at once
   with ``torch.func`` (vmap over grad), in chunks.
3. score(x, y) ← cos(g(x, y), g_upd) over all trained parameters concatenated (the pseudo-gradient points along
   the mean of the gradients the client stepped with, so a member's gradient leans towards it).

Departures from the papers: Li et al. also propose a variant that compares the update with and without the record
(their "gradient-diff"); Nasr et al. train a classifier on gradients of known members. This file implements the
training-free cosine only. Over an epoch of many minibatches the weights the gradients were taken at drift away
from w_old; the attack still uses w_old (all it has without simulating the client's epoch on unknown data).
"""

from __future__ import annotations

import torch

from fedleak.attacks.membership import (
    MembershipAttack,
    in_chunks,
    on_device,
    per_example_gradients,
    register_membership_attack,
    trained_names,
)
from fedleak.types import Observation


@register_membership_attack("gradient_alignment")
class GradientAlignment(MembershipAttack):
    paper = ("Li, Li & Ribeiro, ICLR 2023 (openreview QsCSLPP55Ku); Nasr, Shokri & Houmansadr, S&P 2019 "
             "(arXiv 1812.00910)")
    needs_per_example_gradients = True

    def score(self, observation: Observation, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        model = observation.build_model().to(self.device)
        names = trained_names(model)
        update = observation.gradient()
        missing = [k for k in names if k not in update]
        if missing:
            raise ValueError(f"the update has no entry for parameter {missing[0]!r}")
        direction = torch.cat([update[k].reshape(-1) for k in names]).to(self.device, torch.float32)
        direction = direction / direction.norm().clamp_min(1e-30)
        weights = on_device(observation.global_weights, self.device)

        def cosine(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            grads = per_example_gradients(model, weights, x, y)
            return (grads @ direction) / grads.norm(dim=1).clamp_min(1e-30)

        return in_chunks(images, labels, self.config.chunk, self.device, cosine)
