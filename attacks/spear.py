"""SPEAR: exact batch recovery from the gradient of a fully connected layer followed by a ReLU.

Paper: Dimitrov, Baader, Müller, Vechev, *SPEAR: Exact Gradient Inversion of Batches in Federated Learning*,
NeurIPS 2024 (arXiv 2403.03945).

For a first layer ``Z = W X + b`` on the flattened images (X: n×B, one column per image) followed by a ReLU, the
weight gradient is ``dL/dW = D Xᵀ`` with ``D = dL/dZ`` (m×B). Two facts make it invertible:

- ``dL/dW`` has rank B, so any factorisation ``dL/dW = L R`` (here from the SVD, L: m×B with orthonormal columns)
  satisfies ``D = L Q`` and ``Xᵀ = Q⁻¹ R`` for one unknown invertible B×B matrix Q;
- D is sparse: ``D[j, i] = 0`` wherever unit j is inactive on image i (``Z[j, i] ≤ 0``).

Column i of Q therefore spans the null space of any B−1 rows of L on which image i's column of D is zero. The attack,
in float64 on a CPU:

1. sampling: draw random sets of B−1 live rows of L (units active on at least one image) and take the null vector
   of each well-conditioned (B−1)×B submatrix: a proposal direction q;
2. filtering: a proposal is kept when ``L q`` is (near) zero on at least B rows and ``min_zero_share`` of the
   live rows — a column of D is zero on every unit its image leaves inactive, a wrong proposal only on the B−1 sampled
   rows. Proposals with the same zero pattern are one candidate, its direction re-solved as the null vector of L on
   all rows of the pattern (many rows instead of B−1: less float32 noise);
3. selection: candidates sorted by sparsity (then by how often they were proposed); each is taken when it is not
   nearly a combination of those taken and passes the *sign check*: a linear program asks whether some image in the
   span of the batch (the row space of R) has exactly that ReLU pattern — true for a true column, since its own image
   does, and in our measurements false for the mixtures that the sampling also proposes;
4. scales: ``dL/db = D 1 = L Q̂ c`` fixes each column's scale and sign c (least squares), so ``Xᵀ = diag(1/c) Q̂⁻¹ R``;
5. batch check: with W and b known, ``Z = W X + b`` is recomputed and its sign pattern compared with D's zeros (the
   paper's sparsity-matching check). The share of agreeing (unit, image) pairs is ``sign_agreement``. Below
   ``stop_agreement``, single swaps with other sign-consistent candidates are tried while they raise it, and the
   sampling goes on; at ``stop_agreement`` it stops. When the budget runs out, the best batch found is returned with
   its (lower) ``sign_agreement``: a flag that the reconstruction is not exact, scored like any other.

Threat model: honest-but-curious server that knows the architecture and the weights it sent (W and b of the first
layer, needed by the checks) and sees the client's gradient. The batch size B is taken from the update's metadata
when the threat model grants it, else estimated as the rank of ``dL/dW`` (the largest drop between consecutive
singular values); ``batch_from`` in the diagnostics says which. No labels are used or returned.

Limits (from the algebra, seen in tests and ``bench/README.md``): at most one image per live unit; an image must
leave at least B units inactive; the expected number of samples grows like (share of inactive units)^−(B−1), so on
``mlp`` at init — where CIFAR-10 images leave only about a third of the units inactive — B = 16 is out of reach of
the default budget. Patterns can also be unidentifiable: when one image's inactive units all lie inside another's
(likely with few units), a mixture of their two columns is sparser than the true column; and with B ≥ classes the
gradient reaching the layer, ``W2ᵀ(P − Y)ᵀ``, has rank < B, so mixtures vanish on units that all their images
activate — step 3's sign check is what rejects those.

Departures from the paper:
- Sampling budget: the paper samples on a GPU with budgets of millions; here at most ``max_samples`` (default
  1 000 000: 13–75 s on one CPU thread in ``bench/spear.py``) submatrices in chunks of 4096, stopping as soon as
  the batch check agrees fully.
- Null vectors from a batched QR decomposition instead of an SVD (several times faster on a CPU).
- Sampling draws from one row per direction of L (parallel rows, e.g. of units that only one image activates, would
  make a submatrix singular), where the paper draws from all rows.
- Filtering and selection simplified: a proposal needs B and ``min_zero_share`` (the paper's τ, default 0.1) of the
  live rows zero; proposals are grouped by their exact zero pattern with the direction re-solved on the whole
  pattern, then a greedy pass by sparsity and single swaps. The per-candidate sign check (a linear program per
  candidate, at most ``max_sign_checks`` of them) is ours: the paper applies its sparsity-matching score to whole
  batches. On a tuning batch (CIFAR-10 test images 0–15, B = 16) the sparsest proposals were mixtures (up to 92 zero
  rows against 68–82 for the true columns), which a greedy pass by sparsity alone would take; the 20 sparsest all
  failed the linear program while every true column passed it.
- No attack on deeper layers (the paper also recovers the inputs of later FC+ReLU layers) and no label recovery.
- Everything runs on the CPU whatever the attack's ``device`` (the sign checks are scipy linear programs).
- Multi-step FedAvg updates are attacked through the pseudo-gradient ``(w_old − w_new)/(lr·steps)``, which is no
  longer of rank B with one sparsity pattern: recovery there is approximate at best (not measured).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy.optimize import linprog

from fedleak.attacks.base import Attack, register_attack
from fedleak.attacks.cpa import estimate_sources
from fedleak.attacks.cpu_kernels import torch_threads
from fedleak.types import Observation, Reconstruction


@dataclass
class FirstLayer:
    """The first layer's weights (as sent) and the client's gradients for them, float64."""

    weight: torch.Tensor
    bias: torch.Tensor
    weight_grad: torch.Tensor
    bias_grad: torch.Tensor


def first_fc_relu_layer(model: torch.nn.Module, gradients: dict[str, torch.Tensor], input_size: int) -> FirstLayer:
    """The first parameterised layer, which must be a Linear with bias on the flat image, followed by a ReLU.

    "Followed" is read from the module order (the next leaf module), as in ``nn.Sequential`` models like ``mlp``.
    """
    leaves = [(name, m) for name, m in model.named_modules() if not list(m.children())]
    for position, (name, module) in enumerate(leaves):
        if not any(True for _ in module.parameters(recurse=False)):
            continue
        if not isinstance(module, torch.nn.Linear) or module.in_features != input_size or module.bias is None:
            raise ValueError(f"the first layer ({name}: {type(module).__name__}) is not a Linear layer with bias on "
                             f"the flattened image ({input_size} inputs); SPEAR needs one, e.g. the mlp model")
        after = leaves[position + 1][1] if position + 1 < len(leaves) else None
        if not isinstance(after, torch.nn.ReLU):
            raise ValueError(f"the first layer {name} is not followed by a ReLU ({type(after).__name__} instead); "
                             "SPEAR needs the sparsity a ReLU puts into the gradient")
        prefix = f"{name}." if name else ""
        as64 = {"dtype": torch.float64}
        return FirstLayer(module.weight.detach().to(**as64), module.bias.detach().to(**as64),
                          gradients[prefix + "weight"].detach().to(**as64).reshape(module.out_features, -1),
                          gradients[prefix + "bias"].detach().to(**as64).reshape(-1))
    raise ValueError("the model has no parameters")


def null_vectors(rows: torch.Tensor, min_ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Null vector of every (B−1)×B matrix of a stack, and whether the matrix had full rank B−1 (well enough).

    From a complete QR of the transposes (several times faster than a batched SVD): the last column of Q is
    orthogonal to all B−1 rows; R's diagonal flags matrices too close to a lower rank.
    """
    q, r = torch.linalg.qr(rows.transpose(1, 2), mode="complete")
    diagonal = r.diagonal(dim1=1, dim2=2).abs()
    well_posed = diagonal.min(dim=1).values > min_ratio * diagonal.max(dim=1).values
    return q[:, :, -1], well_posed


def near_zero(columns: torch.Tensor, tolerance: float) -> torch.Tensor:
    """Which entries of every column are zero up to ``tolerance`` times the column's largest entry."""
    peak = columns.abs().max(dim=0, keepdim=True).values.clamp_min(1e-300)
    return columns.abs() <= tolerance * peak


def refined_direction(basis: torch.Tensor, zeros: torch.Tensor) -> torch.Tensor:
    """The unit vector q that best vanishes on all rows of the pattern: L's least singular direction there."""
    _, _, vh = torch.linalg.svd(basis[zeros], full_matrices=True)
    return vh[-1]


def distinct_rows(basis: torch.Tensor, tolerance: float = 1e-8) -> torch.Tensor:
    """Index of one representative row per direction: rows of L that are parallel count once.

    Units that only one image activates all give rows parallel to each other (a multiple of that image's row of
    Q⁻¹); two of them in one submatrix leave its null space two-dimensional.
    """
    unit = basis / basis.norm(dim=1, keepdim=True).clamp_min(1e-300)
    parallel = (unit @ unit.T).abs() >= 1 - tolerance
    first = parallel.to(torch.uint8).argmax(dim=1)  # the lowest-numbered row parallel to each row
    return torch.unique(first)


def propose(basis: torch.Tensor, representatives: torch.Tensor, count: int, generator: torch.Generator,
            config: SpearAttack.Config) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct zero patterns (k × live rows) of the proposals that pass the sparsity filter, and their hit counts.

    Submatrices are drawn from one row per direction (``representatives``): parallel rows would make them singular.
    """
    rows, rank = representatives.numel(), basis.shape[1]
    picks = representatives[torch.rand(count, rows, generator=generator).topk(rank - 1, dim=1).indices]
    directions, well_posed = null_vectors(basis[picks], config.min_condition)
    patterns = near_zero(basis @ directions[well_posed].T, config.zero_tolerance).T
    patterns = patterns[patterns.sum(dim=1) >= max(rank, config.min_zero_share * basis.shape[0])]
    if patterns.shape[0] == 0:
        return patterns, torch.zeros(0, dtype=torch.long)
    return torch.unique(patterns, dim=0, return_counts=True)


class SignCheck:
    """Whether some image in the span of the batch has a given ReLU pattern on the first layer (a linear program).

    A true column of D is zero exactly where its own image leaves the unit inactive, and that image lies in the row
    space of R; a mixture of columns almost never has the zero pattern of any such image.
    """

    def __init__(self, layer: FirstLayer, live: torch.Tensor, right: torch.Tensor):
        self.live = live
        #: Z = W x + b for x = Rᵀ a: one row [W Rᵀ | b] per unit, normalised so the margin is scale-free.
        self.rows = torch.cat([layer.weight @ right.T, layer.bias[:, None]], dim=1)
        self.rows = self.rows / self.rows.norm(dim=1, keepdim=True).clamp_min(1e-300)

    def margin(self, zeros_on_live: torch.Tensor) -> float:
        """max t with sign_j · Z_j(a) ≥ t for every unit (t capped at 1): positive when the pattern is realisable."""
        inactive = torch.ones(self.rows.shape[0], dtype=torch.bool)
        inactive[self.live] = zeros_on_live
        signed = self.rows * torch.where(inactive, -1.0, 1.0).to(self.rows.dtype)[:, None]
        size = signed.shape[1] - 1
        # Variables (a, t): −sign·(W Rᵀ a) + t ≤ sign·b; maximise t.
        bound = torch.cat([-signed[:, :size], torch.ones(signed.shape[0], 1, dtype=signed.dtype)], dim=1)
        result = linprog([0.0] * size + [-1.0], A_ub=bound.numpy(), b_ub=signed[:, size].numpy(),
                         bounds=[(None, None)] * size + [(None, 1.0)], method="highs")
        return float(-result.fun) if result.status == 0 else float("-inf")


class CandidatePool:
    """Distinct zero patterns found so far: re-solved direction, sparsity, hits, and (once asked) the sign check."""

    def __init__(self, basis: torch.Tensor, check: SignCheck, max_checks: int):
        self.basis, self.check, self.max_checks = basis, check, max_checks
        #: Candidates left unchecked (and unused) once ``max_checks`` linear programs have run.
        self.skipped: set[bytes] = set()
        self.patterns: dict[bytes, torch.Tensor] = {}
        self.directions: dict[bytes, torch.Tensor] = {}
        self.hits: dict[bytes, int] = {}
        self.margins: dict[bytes, float] = {}

    def __len__(self) -> int:
        return len(self.patterns)

    def add(self, patterns: torch.Tensor, counts: torch.Tensor) -> None:
        for pattern, count in zip(patterns, counts.tolist(), strict=True):
            key = pattern.numpy().tobytes()
            if key not in self.patterns:
                self.patterns[key] = pattern
                self.directions[key] = refined_direction(self.basis, pattern)
                self.hits[key] = 0
            self.hits[key] += count

    def ranked(self) -> list[bytes]:
        """Candidates sparsest first, ties broken by how often they were proposed."""
        return sorted(self.patterns, key=lambda k: (-int(self.patterns[k].sum()), -self.hits[k]))

    def consistent_count(self, slack: float) -> int:
        return sum(margin > -slack for margin in self.margins.values())

    def known_inconsistent(self, key: bytes, slack: float) -> bool:
        """Refused by its check, or left unchecked for good because the checks are spent."""
        if key in self.margins:
            return self.margins[key] <= -slack
        if len(self.margins) >= self.max_checks:
            self.skipped.add(key)
            return True
        return False

    def consistent(self, key: bytes, slack: float) -> bool:
        if key not in self.margins:
            if len(self.margins) >= self.max_checks:  # each check is a linear program: bound their total cost
                self.skipped.add(key)
                return False
            self.margins[key] = self.check.margin(self.patterns[key])
        return self.margins[key] > -slack


def greedy_selection(pool: CandidatePool, count: int, config: SpearAttack.Config) -> list[bytes]:
    """Up to ``count`` candidates, sparsest first, each independent of those taken and passing the sign check."""
    chosen: list[bytes] = []
    for key in pool.ranked():
        if pool.known_inconsistent(key, config.sign_slack):
            continue  # cheap test first: most candidates are mixtures already refused
        trial = torch.stack([pool.directions[k] for k in chosen + [key]], dim=1)
        singular = torch.linalg.svdvals(trial)
        if singular[-1] <= config.min_condition * singular[0] or not pool.consistent(key, config.sign_slack):
            continue
        chosen.append(key)
        if len(chosen) == count:
            break
    return chosen


@dataclass
class Solution:
    """Images (B×n, float64) from a choice of directions, and how well their signs agree with D's zeros."""

    images: torch.Tensor
    scales: torch.Tensor
    agreement: float


def solve(layer: FirstLayer, live: torch.Tensor, basis: torch.Tensor, right: torch.Tensor, directions: torch.Tensor,
          tolerance: float) -> Solution:
    """Scales from the bias gradient, images from Q⁻¹ R, and the ReLU sign check of Z = W X + b against D."""
    mixing = basis @ directions  # columns of D on the live rows, up to scale
    scales = torch.linalg.lstsq(mixing, layer.bias_grad[live].reshape(-1, 1)).solution.reshape(-1)
    images = torch.linalg.solve(directions * scales, right)  # Xᵀ = Q⁻¹ R, one image per row
    activity = torch.zeros(layer.weight.shape[0], directions.shape[1], dtype=torch.bool)
    activity[live] = ~near_zero(mixing, tolerance)
    active = (layer.weight @ images.T + layer.bias[:, None]) > 0
    agreement = float((active == activity).double().mean())
    return Solution(images, scales, agreement)


def alternatives(pool: CandidatePool, chosen: list[bytes], config: SpearAttack.Config) -> list[bytes]:
    """The sparsest sign-consistent candidates not chosen, at most ``config.swap_candidates`` of them."""
    found: list[bytes] = []
    for key in pool.ranked():
        if len(found) == config.swap_candidates:
            break
        if key not in chosen and pool.consistent(key, config.sign_slack):
            found.append(key)
    return found


def swap_to_agree(layer: FirstLayer, live: torch.Tensor, basis: torch.Tensor, right: torch.Tensor,
                  pool: CandidatePool, chosen: list[bytes], config: SpearAttack.Config) -> Solution:
    """Single swaps of a chosen candidate for another while the sign agreement rises (first improvement)."""
    def attempt(keys: list[bytes]) -> Solution | None:
        directions = torch.stack([pool.directions[k] for k in keys], dim=1)
        singular = torch.linalg.svdvals(directions)
        if singular[-1] <= config.min_condition * singular[0]:
            return None
        return solve(layer, live, basis, right, directions, config.zero_tolerance)

    best = attempt(chosen)
    if best is None or best.agreement >= config.stop_agreement:
        return best
    others = alternatives(pool, chosen, config)
    improved, passes = True, 0
    while improved and best.agreement < config.stop_agreement and passes < len(chosen):  # bounded: cost per chunk
        improved, passes = False, passes + 1
        for slot, other in ((s, o) for s in range(len(chosen)) for o in others if o not in chosen):
            trial = chosen[:slot] + [other] + chosen[slot + 1:]
            solution = attempt(trial)
            if solution is not None and solution.agreement > best.agreement:
                chosen, best, improved = trial, solution, True
                break
    return best


@register_attack("spear")
class SpearAttack(Attack):
    """Sparse directions in the row space of the first layer's gradient; scales from the bias gradient."""

    @dataclass
    class Config:
        #: Number of images; None: from the observation's metadata, else estimated from the rank of dL/dW.
        batch_size: int | None = None
        #: Most submatrices sampled (the paper's N); the search stops earlier once the sign check agrees.
        max_samples: int = 1_000_000
        #: Submatrices per chunk: the unit of work between two checks.
        chunk: int = 4096
        #: Share of the live rows on which a proposal must vanish to be kept (the paper's τ), on top of B rows.
        #: With 0, CIFAR-10 batches of 8 flooded the pool with sparse mixtures (thousands of sign checks); with 0.1,
        #: an image that leaves fewer than a tenth of the units inactive is lost (two CIFAR-10 pairs of the tuning set).
        min_zero_share: float = 0.1
        #: An entry of L q counts as zero below this share of the column's largest entry (float32 gradients).
        zero_tolerance: float = 1e-5
        #: A submatrix, or a set of chosen directions, is used only above this σ_min/σ_max.
        min_condition: float = 1e-6
        #: A candidate passes the sign check when its linear program's margin exceeds −sign_slack.
        sign_slack: float = 1e-6
        #: Sign-consistent candidates tried as swaps when the greedy choice fails the batch-wide sign check.
        swap_candidates: int = 32
        #: Most sign checks (linear programs, ~15 ms each) per attack; candidates beyond it are not used.
        max_sign_checks: int = 1000
        #: Stop sampling once this share of (unit, image) pairs has the ReLU pattern of the recovered images.
        stop_agreement: float = 1.0
        #: Torch CPU threads during the attack (restored afterwards); None keeps the process setting.
        cpu_threads: int | None = 1

        def __post_init__(self) -> None:
            if self.batch_size is not None and self.batch_size < 1:
                raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
            if self.max_samples < 1 or self.chunk < 1:
                raise ValueError(f"max_samples and chunk must be positive, got {self.max_samples}, {self.chunk}")
            if not 0 <= self.min_zero_share < 1:
                raise ValueError(f"min_zero_share must be in [0, 1), got {self.min_zero_share}")
            if not 0 < self.zero_tolerance < 1:
                raise ValueError(f"zero_tolerance must be in (0, 1), got {self.zero_tolerance}")

    def reconstruct(self, observation: Observation) -> Reconstruction:
        with torch_threads(self.config.cpu_threads, self.device):
            return self._invert(observation)

    def _invert(self, observation: Observation) -> Reconstruction:
        spec = observation.model
        shape = (spec.in_channels, spec.image_size, spec.image_size)
        layer = first_fc_relu_layer(observation.build_model(), observation.gradient(), shape[0] * shape[1] * shape[2])
        live = layer.weight_grad.abs().sum(dim=1) > 0  # units inactive on every image contribute zero rows
        u, singular, vh = torch.linalg.svd(layer.weight_grad[live], full_matrices=False)
        batch, origin = self._batch_size(observation, singular)
        if batch > int(live.sum()) or batch < 1:
            return Reconstruction.failed(f"{batch} images but only {int(live.sum())} live units in the first layer: "
                                         "SPEAR recovers at most one image per live unit", batch_from=origin)
        basis, right = u[:, :batch], singular[:batch, None] * vh[:batch]
        search = self._search(layer, live, basis, right, batch)
        diagnostics = {"batch": batch, "batch_from": origin, "live_units": int(live.sum())} | search["diagnostics"]
        solution = search["solution"]
        if solution is None:
            found, samples = search["diagnostics"]["sign_consistent"], search["diagnostics"]["samples"]
            return Reconstruction.failed(f"found {found} sign-consistent sparse directions, fewer than the {batch} "
                                         f"images, in {samples} samples (raise max_samples)", **diagnostics)
        images = solution.images.reshape(batch, *shape).clamp(0, 1).float()
        return Reconstruction(images, diagnostics=diagnostics)

    def _batch_size(self, observation: Observation, singular: torch.Tensor) -> tuple[int, str]:
        """How many images the gradient mixes, and where that number came from."""
        if self.config.batch_size is not None:
            return self.config.batch_size, "config"
        if observation.batch_size:
            return int(observation.batch_size), "metadata"
        return estimate_sources(singular), "estimated"

    def _search(self, layer: FirstLayer, live: torch.Tensor, basis: torch.Tensor, right: torch.Tensor,
                batch: int) -> dict:
        """Sample in chunks until the chosen directions pass the sign check or the budget is spent."""
        config = self.config
        generator = torch.Generator().manual_seed(self.seed)
        pool = CandidatePool(basis, SignCheck(layer, live, right), config.max_sign_checks)
        samples, solution, tried = 0, None, 0
        if batch == 1:  # one image: Q is a scalar, fixed by the bias gradient alone
            samples = config.max_samples
            solution = solve(layer, live, basis, right, torch.ones(1, 1, dtype=basis.dtype), config.zero_tolerance)
        representatives = distinct_rows(basis)
        if representatives.numel() < batch - 1:
            samples = config.max_samples  # fewer directions than a submatrix needs: nothing to sample
        while samples < config.max_samples:
            count = min(config.chunk, config.max_samples - samples)
            before = len(pool)
            pool.add(*propose(basis, representatives, count, generator, config))
            samples += count
            if len(pool) == before or len(pool) < batch:
                continue  # nothing new to choose from
            chosen = greedy_selection(pool, batch, config)
            consistent = pool.consistent_count(config.sign_slack)
            if len(chosen) < batch or consistent == tried:
                continue  # too few, or the same candidates as at the last attempt: the same answer
            tried = consistent
            found = swap_to_agree(layer, live, basis, right, pool, chosen, config)
            if found is not None and (solution is None or found.agreement > solution.agreement):
                solution = found
            if solution is not None and solution.agreement >= config.stop_agreement:
                break
        diagnostics = {"samples": samples, "distinct_rows": int(representatives.numel()) if batch > 1 else None,
                       "candidates": len(pool), "sign_checked": len(pool.margins),
                       "sign_unchecked": len(pool.skipped),
                       "sign_consistent": pool.consistent_count(config.sign_slack),
                       "sign_agreement": None if solution is None else solution.agreement}
        return {"solution": solution, "diagnostics": diagnostics}
