"""CNN6 and CNN6-d of "R-GAP: Recursive Gradient Attack on Privacy" (Zhu & Blaschko, ICLR 2021, arXiv 2010.07733).

Six bias-free convolutions with LeakyReLU(0.2): 12 (4×4, stride 2, pad 2), 36 (3×3, s2), 36, 36, 64 (s2), 128
filters (3×3, pad 1). R-GAP's per-layer linear systems are full rank for CNN6; CNN6-d narrows layer 2 to 20 filters,
which makes that layer rank deficient (the paper's example of an architecture that resists the attack).

``o-cnn6`` is R-CONV's O_CNN6 (Eltaras et al., WISE 2024, arXiv 2406.04227): CNN6 with 3 filters instead of 128 in the
last conv layer. Its 5×5 (32 px) or 4×4 (28 px) input needs 25 or 16 gradient rows per channel and gets 3·9 = 27, so
gradient constraints alone still invert that layer, and the FC layer is 43× smaller.

One deliberate change: the paper ends in a single-logit FC layer without bias trained with a logistic loss; here the
FC layer has ``num_classes`` outputs and a bias so the network trains with the project's cross-entropy loss and the
FC input is recoverable from the bias gradient (the R-GAP attack here uses that route). Default PyTorch initialisation.
32×32 inputs give feature maps 17, 9, 9, 9, 5, 5; 28×28 give 15, 8, 8, 8, 4, 4.
"""

import torch
from torch import nn

from fedleak.models.registry import activation as make_activation
from fedleak.models.registry import register_model


class CNN6(nn.Module):
    def __init__(
        self, in_channels: int, image_size: int, num_classes: int, width2: int, activation: str, width6: int = 128
    ):
        super().__init__()
        spec = [  # (out channels, kernel, stride, padding)
            (12, 4, 2, 2),
            (width2, 3, 2, 1),
            (36, 3, 1, 1),
            (36, 3, 1, 1),
            (64, 3, 2, 1),
            (width6, 3, 1, 1),
        ]
        layers: list[nn.Module] = []
        channels, size = in_channels, image_size
        for out, kernel, stride, padding in spec:
            layers += [nn.Conv2d(channels, out, kernel, stride, padding, bias=False), make_activation(activation)]
            channels, size = out, (size + 2 * padding - kernel) // stride + 1
        if size < 1:
            raise ValueError(f"cnn6 needs an image size of at least 8, got {image_size}")
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(channels * size * size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).flatten(1))


@register_model("cnn6")
def cnn6(in_channels: int, image_size: int, num_classes: int, activation: str = "leaky_relu") -> nn.Module:
    return CNN6(in_channels, image_size, num_classes, width2=36, activation=activation)


@register_model("cnn6-d")
def cnn6_d(in_channels: int, image_size: int, num_classes: int, activation: str = "leaky_relu") -> nn.Module:
    return CNN6(in_channels, image_size, num_classes, width2=20, activation=activation)


@register_model("o-cnn6")
def o_cnn6(in_channels: int, image_size: int, num_classes: int, activation: str = "leaky_relu") -> nn.Module:
    return CNN6(in_channels, image_size, num_classes, width2=36, activation=activation, width6=3)
