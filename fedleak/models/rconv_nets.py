"""The LeNet variants of "R-CONV: An Analytical Approach for Efficient Data Reconstruction via Convolutional
Gradients" (Eltaras, Malluhi, Savino, Di Carlo, Qayyum; WISE 2024; arXiv 2406.04227).

All have four 5×5 convolutions with padding 2 and strides 2, 2, 1, 1, then one FC layer with bias; weights and biases
are drawn from uniform(−0.5, 0.5) as in the paper's code. For a 32×32 input the feature maps are 16×16, 8×8, 8×8,
8×8; for 28×28 they are 14×14, 7×7, 7×7, 7×7. ``activation`` replaces the activations the paper varies; the fixed ones
are LeakyReLU(0.2).

- ``rconv-lenet`` (the paper's default network): 12, 16, 12, 3 filters. LeakyReLU after layers 1–2 (invertible, so
  layer 1 is solved from forward constraints), ``activation`` (default ReLU) after layers 3–4. Gradient constraints
  suffice in layers 2–4: 16·25 ≥ 16·16, 12·25 ≥ 8·8, 3·25 ≥ 8·8 — hence only 3 filters in the last layer.
- ``rconv-lenet-o`` ("optimal", fewest parameters): 12, 16, 3, 3 filters, otherwise as ``rconv-lenet``.
- ``rconv-lenet-4relu``: 12, 22, 3, 3 filters; LeakyReLU only after layer 1, ``activation`` (ReLU) after layers 2–4.
  Dead ReLUs remove gradient rows, so layer 2 needs 22 filters instead of 16.
- ``rconv-lenet-allrelu``: 77, 22, 3, 3 filters with ``activation`` (ReLU) after every layer: the first layer is no
  longer invertible and must be solved from gradient constraints, which needs 77·25 ≥ 32·32 filter rows.
"""

import torch
from torch import nn

from fedleak.models.lenet import dlg_uniform_init
from fedleak.models.registry import activation as make_activation
from fedleak.models.registry import register_model


class RConvLeNet(nn.Module):
    def __init__(
        self,
        in_channels: int,
        image_size: int,
        num_classes: int,
        filters: tuple[int, int, int, int],
        activations: tuple[str, str, str, str],
    ):
        super().__init__()
        if image_size % 4:
            raise ValueError(f"R-CONV LeNets need an image size divisible by 4, got {image_size}")
        layers: list[nn.Module] = []
        channels = in_channels
        for out, stride, act in zip(filters, (2, 2, 1, 1), activations, strict=True):
            layers += [nn.Conv2d(channels, out, kernel_size=5, padding=2, stride=stride), make_activation(act)]
            channels = out
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(channels * (image_size // 4) ** 2, num_classes)
        dlg_uniform_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).flatten(1))


@register_model("rconv-lenet")
def rconv_lenet(in_channels: int, image_size: int, num_classes: int, activation: str = "relu") -> nn.Module:
    return RConvLeNet(
        in_channels, image_size, num_classes, (12, 16, 12, 3), ("leaky_relu", "leaky_relu", activation, activation)
    )


@register_model("rconv-lenet-o")
def rconv_lenet_o(in_channels: int, image_size: int, num_classes: int, activation: str = "relu") -> nn.Module:
    return RConvLeNet(
        in_channels, image_size, num_classes, (12, 16, 3, 3), ("leaky_relu", "leaky_relu", activation, activation)
    )


@register_model("rconv-lenet-4relu")
def rconv_lenet_4relu(in_channels: int, image_size: int, num_classes: int, activation: str = "relu") -> nn.Module:
    return RConvLeNet(
        in_channels, image_size, num_classes, (12, 22, 3, 3), ("leaky_relu", activation, activation, activation)
    )


@register_model("rconv-lenet-allrelu")
def rconv_lenet_allrelu(in_channels: int, image_size: int, num_classes: int, activation: str = "relu") -> nn.Module:
    return RConvLeNet(in_channels, image_size, num_classes, (77, 22, 3, 3), (activation,) * 4)
