"""Uniform symmetric quantisation of the update, a communication-compression step often credited with privacy."""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field

from fedleak.defenses.base import Defense, Update, register_defense


@register_defense
class QuantizeDefense(Defense):
    """Uniform symmetric quantisation of every tensor of the update to ``bits`` bits (``2^(bits−1) − 1`` levels on
    each side of zero, scaled to the tensor's largest magnitude, rounded to nearest)."""

    kind: Literal["quantize"] = "quantize"
    bits: Annotated[int, Field(ge=2, le=16)] = 8

    def transform(self, update: Update, generator: torch.Generator) -> Update:
        levels = 2 ** (self.bits - 1) - 1
        quantized = {}
        for k, v in update.items():
            peak = float(v.abs().max()) if v.numel() else 0.0
            if peak == 0:
                quantized[k] = v.clone()
                continue
            step = peak / levels
            quantized[k] = torch.round(v / step) * step
        return quantized
