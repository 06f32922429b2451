"""R-CONV: "An Analytical Approach for Efficient Data Reconstruction via Convolutional Gradients"
(Eltaras, Malluhi, Savino, Di Carlo, Qayyum; WISE 2024; arXiv 2406.04227).

Algorithm (one sample):
1. FC input from the FC gradients (weight row / bias gradient) and ``dL/dx_fc = W^T dL/db``; no label needed.
2. For every conv layer from the last: propagate ``dL/dy`` through the activation with its derivative written in the
   recovered output ``y`` (works for ReLU too), then solve the layer's gradient constraints ``A(delta) X = dL/dw``
   (one matrix for all input channels) and back-propagate ``dL/dx`` with a transposed convolution.
3. The first layer (few channels, many pixels) needs forward constraints ``W x = sigma^{-1}(y) - b`` when its
   activation is invertible; here they are stacked with its gradient constraints (see ``first_layer``).

Assumptions: batch size 1 (with B > 1 the FC step returns a delta-weighted mixture and everything after it inverts
that mixture — reported in ``diagnostics``), an FC layer with bias at the end, conv + element-wise activations only,
known weights, a true gradient (a multi-step update is treated as its pseudo-gradient). Float64 throughout.

Departures from the reference code: least squares by SVD on the per-channel system instead of a greedy
``matrix_rank`` row selection; forward constraints also fill the null space of deficient layers instead of failing
(after a ReLU, from the live units only); the live/dead pattern of a recovered ReLU output is checked against the
layer's own gradient constraints and corrected where they disagree (``relu_repair``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedleak.attacks.base import Attack, register_attack
from fedleak.attacks.conv_network import ConvLayer
from fedleak.attacks.conv_systems import invert_observation
from fedleak.types import Observation, Reconstruction

FIRST_LAYER_MODES = ("auto", "forward", "stacked", "gradient")


@register_attack("rconv")
class RConv(Attack):
    @dataclass
    class Config:
        """R-CONV settings.

        Attributes:
            first_layer: ``auto`` = both families stacked when the activation is invertible, else gradient
                constraints only; or force ``forward`` / ``stacked`` / ``gradient``. The paper solves the first layer
                from forward constraints alone; on ``rconv-lenet`` at 32×32×3 that square system has condition number
                ~1e6, which turns the float32 rounding of the observed gradients into ~39 dB, while the stacked
                system (condition ~60) gives > 100 dB.
            fill_with_forward: use forward constraints for the part gradient constraints leave open; after a ReLU only
                the rows of live units (``z = y > 0``) are known and used.
            rcond: relative singular-value cut-off of the per-channel gradient systems.
            dead_tol: ReLU outputs at or below ``dead_tol · max|y|`` count as dead (below the FC layer, whose input has
                exact zeros, a dead unit's recovered output is only zero up to the rounding of the solves). On
                ``rconv-lenet`` with ReLU over the first 100 CIFAR-10 test images: 1e-9 → 0 %, 1e-6 → 82 %, 1e-5 → 90 %,
                1e-4 → 80 %, 1e-3 → 29 % at ≥ 40 dB (before ``relu_repair``).
            relu_repair: check the live/dead pattern read with ``dead_tol`` against the layer's own gradient constraints
                and correct it where it is inconsistent (see ``repair_relu_pattern``): fixes misread units near the
                tolerance and the patterns left open by a rank-deficient layer above.
        """

        first_layer: str = "auto"
        fill_with_forward: bool = True
        rcond: float = 1e-10
        dead_tol: float = 1e-5
        relu_repair: bool = True

        def __post_init__(self) -> None:
            if self.first_layer not in FIRST_LAYER_MODES:
                raise ValueError(f"first_layer must be one of {FIRST_LAYER_MODES}, got {self.first_layer!r}")

    def policy(self, layer: ConvLayer, is_first: bool) -> tuple[bool, bool]:
        invertible = layer.activation.invertible
        if not is_first:
            # Forward rows fill what gradient rows leave open; for ReLU only live units give rows.
            return True, self.config.fill_with_forward
        mode = self.config.first_layer
        if mode == "auto":
            mode = "stacked" if invertible or self.config.fill_with_forward else "gradient"
        if mode == "forward" and not invertible:
            raise ValueError(f"first_layer='forward' needs an invertible first activation, got {layer.activation.kind}")
        return mode != "forward", mode != "gradient"

    def reconstruct(self, observation: Observation) -> Reconstruction:
        walk, net = invert_observation(
            observation,
            self.policy,
            rcond=self.config.rcond,
            dead_tol=self.config.dead_tol,
            relu_repair=self.config.relu_repair,
        )
        return analytic_result(observation, walk, net)


def analytic_result(observation: Observation, walk, net) -> Reconstruction:
    """Package a backward walk as a Reconstruction with per-layer diagnostics (shared by R-CONV and R-GAP)."""
    batch = observation.batch_size or 1
    image = torch.from_numpy(walk.image).unsqueeze(0)
    bias_grad = observation.gradient()[f"{net.fc_name}.bias"]
    diagnostics = {
        "layers": [r.as_dict() for r in walk.reports],
        "bias_checks": walk.bias_checks,
        "unique": all(r.deficiency == 0 for r in walk.reports),
        "label_rule": "argmin of the FC bias gradient (exact for one sample)",
        # Near zero means a saturated softmax: float32 rounding then leaves little or no signal in the update.
        "fc_bias_grad_max": float(bias_grad.abs().max()),
    }
    if batch > 1:
        diagnostics["batch_mixture"] = (
            f"batch size {batch}: the FC step recovers a delta-weighted mixture of the inputs; the returned image "
            f"inverts that mixture and is repeated {batch} times"
        )
        image = image.repeat(batch, 1, 1, 1)
    if observation.kind != "gradient":
        diagnostics["update_kind"] = f"{observation.kind}: solved on the pseudo-gradient (w_old - w_new) / (lr K)"
    labels = torch.argmin(bias_grad).reshape(1).repeat(batch) if batch == 1 else None
    return Reconstruction(images=image.float(), labels=labels, diagnostics=diagnostics)
