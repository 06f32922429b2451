"""Closed-form input recovery from a first fully connected layer ("1/alpha" attack).

Papers: Phong et al., "Privacy-Preserving Deep Learning via Additively Homomorphic Encryption" (IEEE TIFS 2018;
the linear-model case) and Geiping et al., "Inverting Gradients" (arXiv 2003.14053, Prop. D.1): for one sample
and a first layer ``z = W x + b`` on the flattened image, ``dL/dW_j = (dL/db_j) x``, so every row with a
non-zero bias gradient gives ``x = (dL/dW)_j / (dL/db_j)`` exactly. Computed in float64 by ``fc_inversion``.

Assumptions: the model's first parameterised layer is a Linear with bias acting on the flattened image (e.g.
``linreg``); one gradient (or a K-step pseudo-gradient, for which the ratio is an approximation since the
deltas mix K steps). No label is needed.

With B > 1 images every row gives a different delta-weighted mixture of the batch. The attack then returns B
of the per-row candidates — those of the rows with the largest |bias gradient| that are least alike (greedy
farthest-point selection on cosine similarity) — marks ``diagnostics["mixture"] = True`` and claims nothing:
the scorer measures what, if anything, leaked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedleak.attacks.base import Attack, register_attack
from fedleak.attacks.fc_inversion import invert_fc, invert_fc_rows
from fedleak.types import Observation, Reconstruction


def first_linear_gradients(model: torch.nn.Module, gradients: dict[str, torch.Tensor], input_size: int):
    """(weight gradient, bias gradient) of the first parameterised layer, which must be a Linear on the image."""
    for name, module in model.named_modules():
        if not any(True for _ in module.parameters(recurse=False)):
            continue
        if not isinstance(module, torch.nn.Linear):
            raise ValueError(f"the first layer ({name}: {type(module).__name__}) is not Linear; use another attack")
        if module.bias is None or module.in_features != input_size:
            raise ValueError(f"the first layer {name} needs a bias and the flattened image ({input_size}) as input")
        prefix = f"{name}." if name else ""
        return gradients[prefix + "weight"], gradients[prefix + "bias"]
    raise ValueError("the model has no parameters")


def diverse_rows(candidates: torch.Tensor, strength: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of ``count`` candidates: start at the strongest row, then add the least similar (by |cosine|)."""
    order = torch.argsort(strength, descending=True)
    unit = candidates / candidates.norm(dim=1, keepdim=True).clamp_min(1e-12)
    chosen = [int(order[0])]
    while len(chosen) < min(count, candidates.shape[0]):
        similarity = (unit @ unit[chosen].T).abs().max(dim=1).values
        similarity[chosen] = float("inf")
        chosen.append(int(similarity.argmin()))
    return torch.tensor(chosen)


@register_attack("linear")
class LinearClosedForm(Attack):
    """x = (dL/dW)_j / (dL/db)_j on a first Linear layer, in float64."""

    @dataclass
    class Config:
        batch_size: int | None = None

    def reconstruct(self, observation: Observation) -> Reconstruction:
        spec = observation.model
        shape = (spec.in_channels, spec.image_size, spec.image_size)
        batch = self.config.batch_size or observation.batch_size or 1
        gradients = observation.gradient()
        weight_grad, bias_grad = first_linear_gradients(observation.build_model(), gradients, shape[0] * shape[1] *
                                                        shape[2])
        if batch == 1:
            image = invert_fc(weight_grad, bias_grad).reshape(1, *shape)
            return Reconstruction(image.float(), diagnostics={"mixture": False, "rows_used": int(bias_grad.numel())})
        g = bias_grad.detach().to(torch.float64).reshape(-1)
        rows = torch.nonzero(g.abs() > 1e-12).reshape(-1)
        if rows.numel() == 0:
            return Reconstruction.failed("bias gradient is zero: the first layer's input cannot be recovered")
        candidates = invert_fc_rows(weight_grad, bias_grad)
        picked = diverse_rows(candidates, g[rows].abs(), batch)
        images = candidates[picked].reshape(-1, *shape)
        diagnostics = {"mixture": True, "candidates": int(rows.numel()), "rows_used": rows[picked].tolist()}
        if images.shape[0] < batch:
            diagnostics["fewer_candidates_than_images"] = True
        return Reconstruction(images.float(), diagnostics=diagnostics)
