"""R-GAP: "Recursive Gradient Attack on Privacy" (Zhu & Blaschko, ICLR 2021, arXiv 2010.07733).

Algorithm (one sample): walk the network backwards; at each conv layer stack the gradient constraints
``K(k_i) x = vec(dL/dW_i)``, the forward constraints ``W_i x = sigma_i^{-1}(x_{i+1})`` and (on the padded unknown) the
padding constraints, and solve by least squares; then ``k_{i-1}`` follows from ``W_i^T k_i`` and the activation
derivative. The per-layer rank of the stacked system against its number of unknowns is R-GAP's "rank analysis": a
rank-deficient layer cannot be inverted uniquely (CNN6 is full rank everywhere, CNN6-d is not). The diagnostics also
hold the COPA index of Chen & Campbell (BMVC 2022, arXiv 2210.13231), which weighs each layer's deficiency by its
depth.

Assumptions: batch size 1, invertible activations (LeakyReLU, sigmoid, tanh, identity — ReLU is refused; use
``rconv``), known weights, a gradient. Departures from the paper, stated:
- last layer: the multi-class cross-entropy route with a bias (FC input = weight-gradient row / bias gradient, no label
  needed) replaces the paper's single-logit logistic-loss route (solving ``mu l'(mu) = <G, w>``), which is not
  implemented;
- padding: the padded entries are eliminated instead of pinned by identity rows (same solution, same deficiency);
- solver: gradient constraints first by SVD, forward constraints fill their null space (or one sparse least-squares
  solve of the stacked system for big null spaces); identical to the stacked least squares for exact gradients,
  float64 throughout and never a dense stacked matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedleak.attacks.base import Attack, register_attack
from fedleak.attacks.conv_network import ConvLayer
from fedleak.attacks.conv_systems import copa_index, invert_observation
from fedleak.attacks.rconv import analytic_result
from fedleak.types import Observation, Reconstruction


@register_attack("rgap")
class RGap(Attack):
    @dataclass
    class Config:
        """R-GAP settings.

        Attributes:
            rcond: relative singular-value cut-off of the per-channel gradient systems and the null-space fill.
            nullspace_limit: largest ``channels × nullity`` filled densely; bigger null spaces use a sparse stacked
                solve.
        """

        rcond: float = 1e-10
        nullspace_limit: int = 1500

    @staticmethod
    def policy(layer: ConvLayer, is_first: bool) -> tuple[bool, bool]:
        if not layer.activation.invertible:
            raise ValueError(
                f"R-GAP needs invertible activations; layer {layer.name} is followed by {layer.activation.kind} "
                f"(use the 'rconv' attack, which only needs the derivative)"
            )
        return True, True

    def reconstruct(self, observation: Observation) -> Reconstruction:
        walk, net = invert_observation(
            observation, self.policy, rcond=self.config.rcond, nullspace_limit=self.config.nullspace_limit
        )
        result = analytic_result(observation, walk, net)
        result.diagnostics["copa_index"] = copa_index([r.deficiency for r in walk.reports])
        # Sparse-solver verdicts are numerical, and deficiencies from them are lower bounds.
        result.diagnostics["copa_exact"] = all(r.deficiency_exact for r in walk.reports)
        result.diagnostics["rank_analysis"] = [
            {
                "layer": r.layer,
                "unknowns": r.unknowns,
                "rank": r.rank,
                "deficiency": r.deficiency,
                "exact": r.deficiency_exact,
            }
            for r in walk.reports
        ]
        return result
