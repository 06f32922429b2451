"""Linear model on the flattened image: the setting of the closed-form ("1/alpha") reconstruction."""

import torch
from torch import nn

from fedleak.models.registry import register_model


class LinearRegression(nn.Module):
    def __init__(self, in_channels: int, image_size: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(in_channels * image_size * image_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


@register_model("linreg")
def linreg(in_channels: int, image_size: int, num_classes: int, activation: str | None = None) -> nn.Module:
    if activation not in (None, "identity"):
        raise ValueError("linreg has no activation")
    return LinearRegression(in_channels, image_size, num_classes)
