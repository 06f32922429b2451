"""LeNet of "Deep Leakage from Gradients" (Zhu, Liu, Han 2019, arXiv 1906.08935).

Three 5×5 convolutions with 12 channels (strides 2, 2, 1), sigmoid activations, one FC layer with bias,
weights and biases drawn from uniform(−0.5, 0.5) as in the DLG reference code. The FC size follows the
input: 28×28 → 12·7·7, 32×32 → 12·8·8, 64×64 → 12·16·16.
"""

import torch
from torch import nn

from fedleak.models.registry import activation as make_activation
from fedleak.models.registry import register_model


def dlg_uniform_init(model: nn.Module) -> None:
    """DLG's initialisation: every conv/linear weight and bias from uniform(−0.5, 0.5), as in the DLG reference
    code that the gradient-leakage papers evaluate on."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.uniform_(module.weight, -0.5, 0.5)
            if module.bias is not None:
                nn.init.uniform_(module.bias, -0.5, 0.5)


class LeNet(nn.Module):
    def __init__(self, in_channels: int, image_size: int, num_classes: int, activation: str = "sigmoid"):
        super().__init__()
        if image_size % 4:
            raise ValueError(f"lenet needs an image size divisible by 4, got {image_size}")
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 12, kernel_size=5, padding=2, stride=2),
            make_activation(activation),
            nn.Conv2d(12, 12, kernel_size=5, padding=2, stride=2),
            make_activation(activation),
            nn.Conv2d(12, 12, kernel_size=5, padding=2, stride=1),
            make_activation(activation),
        )
        self.fc = nn.Linear(12 * (image_size // 4) ** 2, num_classes)
        dlg_uniform_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).flatten(1))


@register_model("lenet")
def lenet(in_channels: int, image_size: int, num_classes: int, activation: str = "sigmoid") -> nn.Module:
    return LeNet(in_channels, image_size, num_classes, activation)


@register_model("lenet64")
def lenet64(in_channels: int, image_size: int, num_classes: int, activation: str = "sigmoid") -> nn.Module:
    """Alias used by DLG reproductions for 64×64×3 inputs (same network, sized from the input)."""
    return LeNet(in_channels, image_size, num_classes, activation)
