"""Geometry and structure of the networks the analytic attacks (R-CONV, R-GAP, hybrid) can invert.

Those attacks are defined for one family only: conv (+activation) layers followed by a single FC layer with bias.
:func:`parse_network` traces a model once and describes it as that chain, with every conv layer's shapes
(:class:`ConvGeometry`) and the activation after it, or rejects it naming the offending module.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fedleak.attacks.activations import ActivationSpec, is_activation


@dataclass(frozen=True)
class ConvGeometry:
    """Shapes of one conv layer for a square-kernel, symmetric-stride/padding convolution."""

    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    padding: int
    in_h: int
    in_w: int
    out_h: int
    out_w: int

    @classmethod
    def from_module(cls, conv: nn.Conv2d, in_h: int, in_w: int) -> ConvGeometry:
        k, s, p = conv.kernel_size, conv.stride, conv.padding
        if isinstance(p, str) or len({k[0], k[1]}) != 1 or len({s[0], s[1]}) != 1 or len({p[0], p[1]}) != 1:
            raise ValueError(f"analytic attacks need square kernels, equal strides and numeric equal padding: {conv}")
        if conv.groups != 1 or conv.dilation != (1, 1) or conv.padding_mode != "zeros":
            raise ValueError(f"analytic attacks support plain convolutions only (groups=1, dilation=1, zeros): {conv}")
        out_h = (in_h + 2 * p[0] - k[0]) // s[0] + 1
        out_w = (in_w + 2 * p[0] - k[0]) // s[0] + 1
        return cls(conv.in_channels, conv.out_channels, k[0], s[0], p[0], in_h, in_w, out_h, out_w)

    @property
    def pixels(self) -> int:
        """Unknowns per input channel."""
        return self.in_h * self.in_w

    @property
    def unknowns(self) -> int:
        return self.in_channels * self.pixels

    @property
    def gradient_rows(self) -> int:
        """Gradient constraints per channel: filters × kernel area."""
        return self.out_channels * self.kernel * self.kernel

    @property
    def forward_rows(self) -> int:
        return self.out_channels * self.out_h * self.out_w

    @property
    def filters_kernel_condition(self) -> bool:
        """R-CONV's necessary condition ``filters · kernel² ≥ H · W`` for gradient constraints alone."""
        return self.gradient_rows >= self.pixels


@dataclass
class ConvLayer:
    """One conv layer of the attacked network, with the activation that follows it."""

    name: str  # module name; parameters are ``{name}.weight`` / ``{name}.bias``
    module: nn.Conv2d
    geometry: ConvGeometry
    activation: ActivationSpec

    @property
    def has_bias(self) -> bool:
        return self.module.bias is not None


@dataclass
class Network:
    """A network of the form conv (+activation) … conv (+activation) → flatten → linear (with bias)."""

    convs: list[ConvLayer]
    fc_name: str
    fc: nn.Linear
    input_shape: tuple[int, int, int]


def parse_network(model: nn.Module, input_shape: tuple[int, int, int]) -> Network:
    """Trace ``model`` on a dummy input and describe it as conv layers followed by one FC layer.

    Raises:
        ValueError: for any other structure (pooling, normalisation, several FC layers, FC without bias…), naming the
            offending module, because the analytic attacks are defined only for this family.
    """
    names = {module: name for name, module in model.named_modules()}
    order: list[tuple[nn.Module, tuple[int, ...]]] = []
    hooks = [
        m.register_forward_hook(lambda mod, inp, out: order.append((mod, tuple(inp[0].shape))))
        for m in model.modules()
        if not list(m.children())
    ]
    try:
        with torch.no_grad():
            param = next(model.parameters())
            model(torch.zeros((1, *input_shape), dtype=param.dtype, device=param.device))
    finally:
        for hook in hooks:
            hook.remove()

    convs: list[ConvLayer] = []
    fc: nn.Linear | None = None
    for module, in_shape in order:
        if isinstance(module, nn.Conv2d):
            if fc is not None:
                raise ValueError(f"conv layer {names[module]!r} after the FC layer is not supported")
            geometry = ConvGeometry.from_module(module, in_shape[-2], in_shape[-1])
            convs.append(ConvLayer(names[module], module, geometry, ActivationSpec("identity")))
        elif isinstance(module, nn.Linear):
            if fc is not None:
                raise ValueError("analytic attacks support exactly one FC layer (the last); found a second one")
            if module.bias is None:
                raise ValueError(f"FC layer {names[module]!r} has no bias: its input cannot be recovered analytically")
            fc = module
        elif is_activation(module):
            if fc is not None:
                raise ValueError("an activation after the FC layer is not supported (the FC must output the logits)")
            if not convs:
                raise ValueError("an activation before the first conv layer is not supported")
            if convs[-1].activation.kind != "identity":
                raise ValueError(f"two activations after conv layer {convs[-1].name!r}")
            convs[-1].activation = ActivationSpec.from_module(module)
        elif isinstance(module, nn.Flatten):
            continue
        else:
            raise ValueError(
                f"module {names[module]!r} ({type(module).__name__}) is not supported by the analytic attacks; "
                f"they need conv (+activation) layers followed by one FC layer with bias"
            )
    if fc is None:
        raise ValueError("the network has no FC layer: the analytic attacks start from the last FC layer")
    return Network(convs, names[fc], fc, tuple(input_shape))
