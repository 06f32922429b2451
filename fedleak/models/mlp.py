"""Fully connected network on the flattened image: the setting of the Cocktail Party Attack.

Kariyappa et al., "Cocktail Party Attack: Breaking Aggregation-Based Privacy in Federated Learning Using
Independent Component Analysis", ICML 2023 (arXiv 2209.05578) attack the first fully connected layer of a network
that sees the flattened image: its weight gradient is a linear mixture of the batch's images. Their FC-2 network,
registered here as ``mlp``: flatten → Linear(C·H·W, 256) with bias → ReLU → Linear(256, classes), PyTorch's
default initialisation (as in the paper's code). The images enter the first layer as they are, in [0, 1] — no
normalisation inside the model, like ``linreg``.

The hidden widths are configurable in Python: ``MLP(in_channels, image_size, num_classes, widths=(1024, 256))``
builds flatten → 1024 → ReLU → 256 → ReLU → classes; a wider first layer lifts the attack's batch limit (it
unmixes at most as many images as the first layer has units). To use such a variant in a scenario, register it
under its own name, e.g. ``register_model("mlp-1024")(functools.partial(mlp, widths=(1024,)))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fedleak.models.registry import activation as make_activation
from fedleak.models.registry import register_model

#: The paper's FC-2 hidden width.
DEFAULT_WIDTHS = (256,)


class MLP(nn.Module):
    """flatten → [Linear(with bias) → activation] per hidden width → Linear → logits."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int,
                 widths: Sequence[int] = DEFAULT_WIDTHS, activation: str = "relu"):
        super().__init__()
        if not widths or any(w < 1 for w in widths):
            raise ValueError(f"mlp needs at least one hidden layer of positive width, got widths={tuple(widths)}")
        layers: list[nn.Module] = []
        features = in_channels * image_size * image_size
        for width in widths:
            layers += [nn.Linear(features, width), make_activation(activation)]
            features = width
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x.flatten(1)))


@register_model("mlp")
def mlp(in_channels: int, image_size: int, num_classes: int, activation: str = "relu",
        widths: Sequence[int] = DEFAULT_WIDTHS) -> nn.Module:
    """The Cocktail Party Attack's FC-2: one hidden layer of 256 ReLU units."""
    return MLP(in_channels, image_size, num_classes, widths, activation)
