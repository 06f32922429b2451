"""Cocktail Party Attack: unmix the batch from the first fully connected layer's gradient with ICA.

Paper: Kariyappa et al., *Cocktail Party Attack: Breaking Aggregation-Based Privacy in Federated Learning Using
Independent Component Analysis*, ICML 2023 (arXiv 2209.05578). FastICA: Hyvärinen, *Fast and Robust Fixed-Point
Algorithms for Independent Component Analysis*, IEEE Trans. Neural Networks 1999.

For a first layer ``z = W x + b`` on the flattened image, the weight gradient of a batch is
``dL/dW = A S`` with ``S`` the B×D matrix of the flattened images and ``A[j, b] = dL/dz_j`` of image b divided by B:
every row of the gradient is a mixture of the same B images. Reading the D pixels as samples of B unknown
signals, this is a blind source separation problem — the "cocktail party" — and independent component analysis
recovers the images up to order, sign and scale:

1. the number of sources B: the batch size from the update's metadata when the threat model grants it (for an
   epoch update: ``num_examples``, every image of the shard is in the mixture); otherwise estimated as the position
   of the largest gap between consecutive singular values of ``dL/dW`` (its rank), reported in the diagnostics;
2. whitening: centre the mixtures and project them on their top B principal components (PCA, float64);
3. unmixing: FastICA (symmetric, contrast G(u) = −exp(−u²/2)) finds the rotation of the whitened
   data whose outputs are the least Gaussian; the unmixing matrix is then applied to the raw gradient rows;
4. sign and scale: the bias gradient is ``dL/db = A 1``. With the mixing matrix estimated from step 3,
   ``A_hat c = dL/db`` gives each recovered source's own scale ``c_b`` (sign included), so ``source_b / c_b`` is
   the image at its true intensity (``intensity="bias"``). With ``intensity="minmax"`` — the paper's choice — each
   source is flipped by the sign of ``c_b`` (without a bias: so that its pixel sum is positive, images being
   non-negative) and mapped affinely onto [0, 1]: the output's intensity is then normalised, not recovered.

It needs no labels and no client-specific fact, so it works unchanged on a secure-aggregation aggregate: the
weighted mean of several clients' gradients is one mixture of all their images (``batch_size`` is then the sum of
the clients' batch sizes). Multi-step FedAvg updates are attacked through the pseudo-gradient
``observation.gradient()`` = ``(w_old − w_new)/(lr·steps)``: every SGD step adds another mixture of the same
images to the first layer's weights, so the update stays a mixture of them (the per-step mixing weights change,
which ICA does not need to know).

Threat model: honest-but-curious server that knows the architecture (a first ``Linear`` layer on the flattened
image, as in ``mlp``) and, optionally, the batch size; at most as many images as the first layer has units
(the rank of ``dL/dW``) can be separated.

Departures from the paper:
- The paper maximises non-Gaussianity of the unmixed images with Adam (25 000 iterations in its code), a decorrelation
  penalty between unmixing rows and a total-variation prior. Here FastICA's fixed-point iteration (tens to a few
  hundred iterations, seconds on a CPU) is run on the spatial finite differences of every gradient row
  (``filter="diff"``): differencing is linear, so it keeps the mixing matrix, and turns images into sparse,
  nearly independent signals — the property the paper's TV prior rewards. On the tuning images (CIFAR-10 test
  images 0–127, ``bench/cpa.py --part tune``) this raised the re-identified share of 64-image batches from 0.16
  (ICA on raw pixels) to 0.98; an Adam refinement with the paper's objective after FastICA did not improve it and
  is left out (``bench/README.md``).
- Intensity from the bias gradient (step 4) instead of the paper's per-image min–max normalisation (kept as an
  option); the sign from the bias gradient or from non-negativity, where the paper's code picks it in its
  evaluation with the ground truth.
- No feature-inversion stage: that stage of the paper attacks convolutional networks through their FC layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from fedleak.attacks.base import Attack, register_attack
from fedleak.attacks.cpu_kernels import torch_threads
from fedleak.types import Observation, Reconstruction


def first_linear_layer(model: torch.nn.Module, gradients: dict[str, torch.Tensor], input_size: int,
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight gradient, bias gradient or None) of the first parameterised layer, a Linear on the flat image."""
    for name, module in model.named_modules():
        if not any(True for _ in module.parameters(recurse=False)):
            continue
        if not isinstance(module, torch.nn.Linear) or module.in_features != input_size:
            raise ValueError(f"the first layer ({name}: {type(module).__name__}) is not a Linear layer on the "
                             f"flattened image ({input_size} inputs); CPA needs one, e.g. the mlp model")
        prefix = f"{name}." if name else ""
        bias = gradients.get(prefix + "bias") if module.bias is not None else None
        return gradients[prefix + "weight"], bias
    raise ValueError("the model has no parameters")


def estimate_sources(singular_values: torch.Tensor) -> int:
    """The rank of a mixture: the position of the largest drop between consecutive singular values."""
    if singular_values.numel() < 2:
        return int(singular_values.numel())
    # Floored well above float64 round-off: an exact low-rank mixture then ends in one finite drop to the floor.
    floored = singular_values.clamp_min(float(singular_values[0]) * 1e-13 + 1e-300)
    drops = floored[:-1].log() - floored[1:].log()
    return int(drops.argmax()) + 1


def differences(rows: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Horizontal and vertical neighbour differences of every row read as a C×H×W image (a linear map per row)."""
    images = rows.reshape(-1, *shape)
    dx = images[..., :, 1:] - images[..., :, :-1]
    dy = images[..., 1:, :] - images[..., :-1, :]
    return torch.cat([dx.flatten(1), dy.flatten(1)], dim=1)


def principal_axes(signals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(centred m×N signals, left singular vectors, singular values), float64: PCA of the mixtures."""
    centred = signals - signals.mean(dim=1, keepdim=True)
    u, s, _ = torch.linalg.svd(centred, full_matrices=False)
    return centred, u, s


def whitening_matrix(u: torch.Tensor, s: torch.Tensor, sources: int, samples: int) -> torch.Tensor:
    """B×m projection on the top B principal axes, scaled so every whitened signal has unit variance."""
    return (u[:, :sources] / s[:sources]).T * samples**0.5


def symmetric_decorrelation(w: torch.Tensor) -> torch.Tensor:
    """(W Wᵀ)^(-1/2) W: the nearest orthogonal matrix, which keeps all unmixing rows apart at once."""
    values, vectors = torch.linalg.eigh(w @ w.T)
    return vectors @ torch.diag(values.clamp_min(1e-300).rsqrt()) @ vectors.T @ w


def fast_ica(white: torch.Tensor, iterations: int, tolerance: float, generator: torch.Generator,
             ) -> tuple[torch.Tensor, int, bool]:
    """Symmetric FastICA on whitened B×N data with G(u) = −exp(−u²/2): (B×B rotation, iterations, converged)."""
    sources, samples = white.shape
    start = torch.randn(sources, sources, generator=generator, dtype=white.dtype)  # on the CPU: same on any device
    w = symmetric_decorrelation(start.to(white.device))
    for step in range(1, iterations + 1):
        y = w @ white
        gauss = torch.exp(-0.5 * y * y)
        # Fixed point of E[z g(wᵀz)] − E[g'(wᵀz)] w for every row, g(u) = u·exp(−u²/2).
        new = (y * gauss) @ white.T / samples - ((1 - y * y) * gauss).mean(dim=1, keepdim=True) * w
        new = symmetric_decorrelation(new)
        change = float(((new * w).sum(dim=1).abs() - 1).abs().max())
        w = new
        if change < tolerance:
            return w, step, True
    return w, iterations, False


def source_scales(mixtures: torch.Tensor, sources: torch.Tensor, bias_grad: torch.Tensor) -> torch.Tensor:
    """Each source's scale c from ``dL/db = A 1``: fit the mixing matrix A_hat (X ≈ A_hat S), solve A_hat c = dL/db."""
    mixing = torch.linalg.lstsq(sources.T, mixtures.T).solution.T
    return torch.linalg.lstsq(mixing, bias_grad.reshape(-1, 1)).solution.reshape(-1)


def minmax(sources: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
    """Each row flipped by its sign and mapped affinely onto [0, 1] (the paper's normalisation)."""
    flipped = sources * signs[:, None]
    low, high = flipped.min(dim=1, keepdim=True).values, flipped.max(dim=1, keepdim=True).values
    return (flipped - low) / (high - low).clamp_min(1e-300)


@register_attack("cpa")
class CocktailPartyAttack(Attack):
    """FastICA on the first Linear layer's weight gradient; intensities from the bias gradient."""

    @dataclass
    class Config:
        #: Number of images in the mixture; None: from the observation's metadata, else estimated from the rank.
        batch_size: int | None = None
        #: ICA on the rows' finite differences ("diff") or on the raw pixels ("none", the paper's input).
        filter: Literal["diff", "none"] = "diff"
        #: "bias": true intensities from the bias gradient; "minmax": each image normalised to [0, 1].
        intensity: Literal["bias", "minmax"] = "bias"
        max_iterations: int = 1000
        tolerance: float = 1e-7
        #: Torch CPU threads during the attack (restored afterwards); None keeps the process setting. One thread by
        #: default: where clients train on the same cores, more threads oversubscribe them (bench/README.md, CPA).
        cpu_threads: int | None = 1

        def __post_init__(self) -> None:
            if self.filter not in ("diff", "none"):
                raise ValueError(f"filter must be 'diff' or 'none', got {self.filter!r}")
            if self.intensity not in ("bias", "minmax"):
                raise ValueError(f"intensity must be 'bias' or 'minmax', got {self.intensity!r}")
            if self.batch_size is not None and self.batch_size < 1:
                raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")

    def reconstruct(self, observation: Observation) -> Reconstruction:
        with torch_threads(self.config.cpu_threads, self.device):
            return self._unmix(observation)

    def _unmix(self, observation: Observation) -> Reconstruction:
        spec = observation.model
        shape = (spec.in_channels, spec.image_size, spec.image_size)
        weight_grad, bias_grad = first_linear_layer(observation.build_model(), observation.gradient(),
                                                    shape[0] * shape[1] * shape[2])
        mixtures = weight_grad.detach().to(self.device, torch.float64).reshape(weight_grad.shape[0], -1)
        # Units dead for every image (ReLU) have all-zero rows: they mix nothing and would add exact zeros to the
        # singular values, a drop steeper than the one that marks the number of images.
        live = mixtures.abs().sum(dim=1) > 0
        mixtures = mixtures[live]
        bias_grad = None if bias_grad is None else bias_grad.detach().to(self.device, torch.float64).reshape(-1)[live]
        signals = differences(mixtures, shape) if self.config.filter == "diff" else mixtures
        centred, axes, singular_values = principal_axes(signals)
        rank = estimate_sources(singular_values)
        wanted, origin = self._source_count(observation)
        wanted = rank if wanted is None else wanted
        # No more sources than mixtures: a first layer of m units separates at most m images.
        count = min(wanted, int((singular_values > singular_values[0] * 1e-10).sum()))
        whitening = whitening_matrix(axes, singular_values, count, centred.shape[1])
        generator = torch.Generator().manual_seed(self.seed)
        rotation, steps, converged = fast_ica(whitening @ centred, self.config.max_iterations,
                                              self.config.tolerance, generator)
        # The unmixing found on the (filtered, centred) signals applies to the raw rows, since both maps are
        # linear per row: each row of ``sources`` is c_b · image_b when the separation is exact.
        sources = rotation @ whitening @ mixtures
        images, how = self._intensities(mixtures, sources, bias_grad)
        diagnostics = {
            "sources": count, "sources_from": origin, "rank_estimate": rank, "filter": self.config.filter,
            "intensity": how, "ica_iterations": steps, "ica_converged": converged,
            "singular_value_gap": _gap(singular_values, count),
        }
        if wanted > count:
            diagnostics["fewer_sources_than_images"] = wanted
        return Reconstruction(images.reshape(count, *shape).float().cpu(), diagnostics=diagnostics)

    def _source_count(self, observation: Observation) -> tuple[int | None, str]:
        """How many images the update mixes, and where that number came from."""
        if self.config.batch_size is not None:
            return self.config.batch_size, "config"
        if observation.kind == "epochs" and observation.metadata.num_examples:
            return int(observation.metadata.num_examples), "num_examples"
        if observation.batch_size:
            return int(observation.batch_size), "metadata"
        return None, "estimated"

    def _intensities(self, mixtures: torch.Tensor, sources: torch.Tensor,
                     bias_grad: torch.Tensor | None) -> tuple[torch.Tensor, str]:
        """Images in [0, 1] from the unmixed sources: true scale from the bias gradient, or min–max normalised."""
        if bias_grad is None:
            return minmax(sources, torch.sign(sources.sum(dim=1))), "minmax"
        scales = source_scales(mixtures, sources, bias_grad)
        if self.config.intensity == "minmax":
            return minmax(sources, torch.sign(scales)), "minmax"
        return (sources / scales[:, None]).clamp(0, 1), "bias"


def _gap(singular_values: torch.Tensor, count: int) -> float | None:
    """σ_B / σ_(B+1): large when the update mixes exactly B images (None when there is no next value)."""
    if count >= singular_values.numel() or singular_values[count] <= 0:
        return None
    return float(singular_values[count - 1] / singular_values[count])
