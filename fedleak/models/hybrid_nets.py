"""Small CNNs of "Analysing Training-Data Leakage from Gradients through Linear Systems and Gradient Matching"
(Chen & Campbell, BMVC 2022, arXiv 2210.13231).

Bias-free convolutions without padding, tanh activations, one FC layer with bias (the logits). Their per-layer
linear systems are rank deficient by design, which is where the hybrid correction matters.

- ``hybrid-cnn-a`` (the paper's 2-layer ``cnn2_c2``): conv 6 filters 4×4 stride 2 → FC. 32×32 → 15×15.
- ``hybrid-cnn-b`` (the paper's 3-layer ``cnn3_c1``): conv 6 filters 3×3 stride 1 → conv 3 filters 4×4 stride 2 → FC.
  32×32 → 30×30 → 14×14.
"""

import torch
from torch import nn

from fedleak.models.registry import activation as make_activation
from fedleak.models.registry import register_model


class HybridCNN(nn.Module):
    def __init__(
        self, in_channels: int, image_size: int, num_classes: int, spec: list[tuple[int, int, int]], activation: str
    ):
        super().__init__()
        layers: list[nn.Module] = []
        channels, size = in_channels, image_size
        for out, kernel, stride in spec:
            layers += [nn.Conv2d(channels, out, kernel, stride, padding=0, bias=False), make_activation(activation)]
            channels, size = out, (size - kernel) // stride + 1
            if size < 1:
                raise ValueError(f"image size {image_size} is too small for this network")
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(channels * size * size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).flatten(1))


@register_model("hybrid-cnn-a")
def hybrid_cnn_a(in_channels: int, image_size: int, num_classes: int, activation: str = "tanh") -> nn.Module:
    return HybridCNN(in_channels, image_size, num_classes, [(6, 4, 2)], activation)


@register_model("hybrid-cnn-b")
def hybrid_cnn_b(in_channels: int, image_size: int, num_classes: int, activation: str = "tanh") -> nn.Module:
    return HybridCNN(in_channels, image_size, num_classes, [(6, 3, 1), (3, 4, 2)], activation)
