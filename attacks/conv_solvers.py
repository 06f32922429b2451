"""Solving one conv layer's linear systems for its input, with a report of how well determined it was.

Strategy (:func:`solve_layer`), all in float64, one function per way of solving:
1. gradient constraints per channel by SVD (one factorisation for all channels), giving a particular solution and the
   null space ``N`` of ``A`` (:func:`_solve_from_gradient`);
2. if ``A`` has full column rank, done (``D·K² ≥ H·W`` is necessary, not sufficient: stride and dead ReLUs cost rows);
3. otherwise, with forward constraints, fill the null space: ``x = x_p + blockdiag(N) a`` with ``a`` the least-squares
   solution of ``W blockdiag(N) a = z - W x_p`` (small when the null space is small, :func:`_fill_null_space_densely`),
   or, for big null spaces (first layers), a sparse least-squares solve of the stacked system
   (:func:`_solve_stacked_sparsely`);
4. without forward constraints the minimum-norm solution is returned and the deficiency reported
   (:func:`_minimum_norm`); forward constraints alone are one sparse least-squares solve (:func:`_solve_forward_only`).
No dense matrix larger than a per-channel system (or a null-space block) is ever formed. The systems themselves are
built in :mod:`fedleak.attacks.conv_constraints`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from fedleak.attacks.conv_constraints import forward_matrix, gradient_matrix, gradient_rhs
from fedleak.attacks.conv_network import ConvGeometry


@dataclass
class LayerReport:
    """Per-layer facts the attacks put into ``Reconstruction.diagnostics``."""

    layer: str
    method: str  # gradient | forward | stacked-nullspace | stacked-sparse | gradient-minnorm
    unknowns: int
    rank: int | None  # rank of the system that was solved (None: not determined exactly)
    deficiency: int | None  # unknowns - rank; 0 means a unique solution
    deficiency_exact: bool  # False when ``deficiency`` is only a lower bound or a sparse-LU verdict
    gradient_rank_per_channel: int | None
    gradient_rows: int
    forward_rows: int | None
    filters_kernel_condition: bool  # filters · kernel² ≥ H · W
    residual: float  # relative residual of the constraints used
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GradientSolve:
    """Per-channel least-squares solution of ``A X = B`` with the null space of ``A``."""

    x: np.ndarray  # pixels × channels (minimum norm)
    rank: int
    null_basis: np.ndarray  # pixels × (pixels - rank)
    residual: float


def solve_gradient_constraints(
    A: sp.spmatrix, B: np.ndarray, rcond: float = 1e-10, need_null: bool = True
) -> GradientSolve:
    """SVD least squares of ``A X = B``; one factorisation serves every channel (column of ``B``).

    ``rcond`` is relative to the largest singular value; directions below it count as null space (they carry no
    information above the float32 rounding of the observed gradients once ``rcond`` is near 1e-7; the default keeps
    everything above float64 noise and lets the caller's forward constraints decide).
    """
    dense = A.toarray() if sp.issparse(A) else np.asarray(A)
    m, n = dense.shape
    # A full V (n × n) only when the null space is needed and rows cannot span all columns.
    U, S, Vt = scipy.linalg.svd(dense, full_matrices=need_null and m < n, lapack_driver="gesdd")
    rank = int((S > rcond * S[0]).sum()) if S.size and S[0] > 0 else 0
    x = Vt[:rank].T @ ((U[:, :rank].T @ B) / S[:rank, None])
    residual = relative_residual(dense @ x - B, B)
    null_basis = Vt[rank:].T if need_null else np.zeros((n, 0))
    return GradientSolve(x=x, rank=rank, null_basis=null_basis, residual=residual)


def relative_residual(error: np.ndarray, reference: np.ndarray) -> float:
    """``|error| / |reference|`` (the absolute norm when the reference is zero)."""
    ref = float(np.linalg.norm(reference))
    return float(np.linalg.norm(error)) / ref if ref > 0 else float(np.linalg.norm(error))


def _scaled(matrix: sp.spmatrix, rhs: np.ndarray) -> tuple[sp.spmatrix, np.ndarray]:
    """Scale a constraint block to unit RMS row norm, so stacked blocks weigh alike."""
    rms = np.sqrt(matrix.multiply(matrix).sum() / max(matrix.shape[0], 1))
    if rms == 0:
        return matrix, rhs
    return matrix / rms, rhs / rms


def sparse_lstsq(
    matrix: sp.spmatrix,
    rhs: np.ndarray,
    tol: float = 1e-9,
    cond_limit: float = 1e10,
    pivot_tol: float = 1e-11,
    x0: np.ndarray | None = None,
) -> tuple[np.ndarray, bool, str]:
    """Least squares (minimum norm when under-determined) for a sparse system, float64.

    A square system is tried with a sparse LU first. Otherwise (or when the LU is singular) LSMR runs on the
    column-equilibrated matrix, from ``x0`` when given; it never forms ``A^T A`` and costs a few hundred sparse
    products for the well-conditioned stacked systems of the analytic attacks. Returns ``(x, full_rank, method)``:
    ``full_rank`` is the LU's pivot verdict or LSMR's condition estimate staying below ``cond_limit``.
    """
    A = sp.csr_matrix(matrix, dtype=np.float64)
    m, n = A.shape
    if m == n:
        try:
            lu = spla.splu(sp.csc_matrix(A))
            x = lu.solve(rhs)
            pivots = np.abs(lu.U.diagonal())
            if pivots.min() > pivot_tol * pivots.max() and np.all(np.isfinite(x)):
                return x, True, "sparse LU"
        except RuntimeError:  # "Factor is exactly singular"
            pass
    norms = np.sqrt(np.asarray(A.multiply(A).sum(axis=0))).ravel()
    scale = np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 0.0)
    scaled = sp.csr_matrix(A @ sp.diags(scale))
    scaled_t = sp.csr_matrix(scaled.T)
    operator = spla.LinearOperator(
        (m, n), matvec=lambda v: scaled @ v, rmatvec=lambda v: scaled_t @ v, dtype=np.float64
    )
    # A warm start (in the scaled variables) saves iterations; LSMR then solves for the correction.
    y0 = None if x0 is None else np.where(norms > 0, x0 * norms, 0.0)
    y, istop, iterations, *_, cond, _ = spla.lsmr(
        operator, rhs, atol=tol, btol=tol, conlim=cond_limit, maxiter=max(4 * min(m, n), 1000), x0=y0
    )
    full = m >= n and istop in (1, 2) and cond < cond_limit
    return scale * y, full, f"LSMR ({iterations} iterations, condition estimate {cond:.1e})"


def lsmr_solve(
    operator: spla.LinearOperator,
    rhs: np.ndarray,
    column_norms: np.ndarray,
    x0: np.ndarray | None = None,
    tol: float = 1e-9,
    cond_limit: float = 1e10,
    max_iterations: int = 3000,
) -> tuple[np.ndarray, bool, str]:
    """LSMR on an operator whose columns are already divided by ``column_norms`` (equilibrated).

    Returns ``(x, full_rank, method)`` in the original variables; ``full_rank`` is LSMR's condition estimate staying
    below ``cond_limit`` on an over-determined system that converged. The full-rank stacked systems of the analytic
    attacks converge in a few hundred iterations; rank-deficient ones converge slowly towards the minimum-norm
    solution, hence the iteration cap (reported).
    """
    m, n = operator.shape
    y0 = None if x0 is None else np.where(column_norms > 0, x0 * column_norms, 0.0)
    y, istop, iterations, *_, cond, _ = spla.lsmr(
        operator, rhs, atol=tol, btol=tol, conlim=cond_limit, maxiter=max_iterations, x0=y0
    )
    x = np.where(column_norms > 0, y / np.where(column_norms > 0, column_norms, 1.0), 0.0)
    full = m >= n and istop in (1, 2) and cond < cond_limit
    capped = ", iteration cap reached" if istop == 7 else ""
    return x, full, f"LSMR ({iterations} iterations{capped}, condition estimate {cond:.1e})"


def _stacked_operator(
    geom: ConvGeometry,
    A: sp.spmatrix,
    B: np.ndarray,
    W: sp.spmatrix,
    zvec: np.ndarray,
    delta: np.ndarray,
    weight: np.ndarray,
    known: np.ndarray,
) -> tuple[spla.LinearOperator, np.ndarray, np.ndarray]:
    """The stacked [gradient; forward] system as convolutions (no sparse matrix products), equilibrated.

    ``K x`` is the weight gradient of the layer at input ``x`` (``conv2d_weight``), ``W x`` the convolution; their
    adjoints are transposed convolutions. Each block is scaled to unit RMS row norm and every column to unit norm, so
    LSMR converges in a few hundred cheap iterations. Returns (operator, scaled right-hand side, column norms).
    """
    C, D, K, s, p = geom.in_channels, geom.out_channels, geom.kernel, geom.stride, geom.padding
    shape_x, shape_out = (1, C, geom.in_h, geom.in_w), (1, D, geom.out_h, geom.out_w)
    w = torch.as_tensor(np.asarray(weight, dtype=np.float64))
    d = torch.as_tensor(np.asarray(delta, dtype=np.float64)).reshape(shape_out)
    live_units = torch.as_tensor(np.flatnonzero(known))
    k_rms = np.sqrt(A.multiply(A).sum() / A.shape[0]) or 1.0
    w_rms = np.sqrt(W.multiply(W).sum() / max(W.shape[0], 1)) or 1.0
    col_k = np.tile(np.sqrt(np.asarray(A.multiply(A).sum(axis=0))).ravel(), C) / k_rms
    col_w = np.sqrt(np.asarray(W.multiply(W).sum(axis=0))).ravel() / w_rms
    norms = np.sqrt(col_k**2 + col_w**2)
    inv = torch.as_tensor(np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 0.0))
    n_k, n_w = C * D * K * K, int(known.sum())

    def matvec(v: np.ndarray) -> np.ndarray:
        x = (torch.as_tensor(np.asarray(v).reshape(-1)) * inv).reshape(shape_x)
        g = torch.nn.grad.conv2d_weight(x, w.shape, d, stride=s, padding=p).permute(1, 0, 2, 3).reshape(-1)
        z = torch.nn.functional.conv2d(x, w, stride=s, padding=p).reshape(-1).index_select(0, live_units)
        return torch.cat([g / k_rms, z / w_rms]).numpy()

    def rmatvec(r: np.ndarray) -> np.ndarray:
        # Both adjoints are transposed convolutions into the same input: one call with the filters and the maps of
        # the two blocks concatenated (LSMR spends most of its time in these small float64 convolutions).
        r = torch.as_tensor(np.asarray(r).reshape(-1))
        rk = (r[:n_k] / k_rms).reshape(C, D, K, K).transpose(0, 1)
        rw = torch.zeros(D * geom.out_h * geom.out_w, dtype=torch.float64).index_copy_(0, live_units, r[n_k:] / w_rms)
        back = torch.nn.grad.conv2d_input(
            shape_x, torch.cat([rk, w]), torch.cat([d, rw.reshape(shape_out)], dim=1), stride=s, padding=p
        )
        return (back.reshape(-1) * inv).numpy()

    operator = spla.LinearOperator((n_k + n_w, C * geom.pixels), matvec=matvec, rmatvec=rmatvec, dtype=np.float64)
    rhs = np.concatenate([B.T.reshape(-1) / k_rms, zvec / w_rms])
    return operator, rhs, norms


def solve_layer(
    geom: ConvGeometry,
    name: str,
    delta: np.ndarray | None,
    weight_grad: np.ndarray | None,
    weight: np.ndarray | None = None,
    z: np.ndarray | None = None,
    use_gradient: bool = True,
    use_forward: bool = True,
    rcond: float = 1e-10,
    nullspace_limit: int = 1500,
) -> tuple[np.ndarray, LayerReport]:
    """Recover a conv layer's input (C×H×W) from gradient and/or forward constraints.

    Args:
        geom: layer shapes.
        name: layer name for the report.
        delta: ``dL/dz`` (D×Ho×Wo) — needed for gradient constraints.
        weight_grad: observed ``dL/dw`` (D×C×K×K).
        weight: layer weights (D×C×K×K) — needed for forward constraints.
        z: pre-activation minus bias (D×Ho×Wo) — needed for forward constraints.
        use_gradient / use_forward: which families to use (forward only when ``weight`` and ``z`` are given).
        rcond: relative singular-value cut-off of the per-channel gradient system.
        nullspace_limit: largest ``C · nullity`` handled by the dense null-space fill; above it the stacked system is
            solved sparsely.
    """
    use_forward = use_forward and weight is not None and z is not None
    use_gradient = use_gradient and delta is not None and weight_grad is not None
    if not (use_forward or use_gradient):
        raise ValueError(f"layer {name}: no constraints to solve with")
    report = _empty_report(geom, name, use_gradient, use_forward)
    forward = None
    if use_forward:
        forward = _known_preactivations(z)
        report.forward_rows = int(forward[1].sum())
    if not use_gradient:
        return _solve_forward_only(geom, weight, *forward, report)
    return _solve_from_gradient(geom, delta, weight_grad, weight, forward, rcond, nullspace_limit, report)


def _empty_report(geom: ConvGeometry, name: str, use_gradient: bool, use_forward: bool) -> LayerReport:
    """The report before solving: the counts of the constraint families in use."""
    return LayerReport(
        layer=name,
        method="",
        unknowns=geom.unknowns,
        rank=None,
        deficiency=None,
        deficiency_exact=True,
        gradient_rank_per_channel=None,
        gradient_rows=geom.gradient_rows * geom.in_channels if use_gradient else 0,
        forward_rows=geom.forward_rows if use_forward else None,
        filters_kernel_condition=geom.filters_kernel_condition,
        residual=float("nan"),
    )


def _known_preactivations(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The finite pre-activations (flattened) and their mask: NaN entries are unknown pre-activations (dead ReLU
    units), whose forward rows are dropped."""
    zvec = np.asarray(z, dtype=np.float64).reshape(-1)
    known = np.isfinite(zvec)
    return zvec[known], known


def _solve_forward_only(
    geom: ConvGeometry, weight: np.ndarray, zvec: np.ndarray, known: np.ndarray, report: LayerReport
) -> tuple[np.ndarray, LayerReport]:
    """Forward constraints alone (R-CONV's first layer as published): a sparse least-squares solve of ``W x = z``."""
    W = forward_matrix(weight, geom)[known]
    x, full, how = sparse_lstsq(*_scaled(W, zvec))
    report.method, report.notes = "forward", [how]
    _set_rank(report, geom.unknowns, full, lower_bound=max(geom.unknowns - W.shape[0], 0))
    report.residual = relative_residual(W @ x - zvec, zvec)
    return x.reshape(geom.in_channels, geom.in_h, geom.in_w), report


def _solve_from_gradient(
    geom: ConvGeometry,
    delta: np.ndarray,
    weight_grad: np.ndarray,
    weight: np.ndarray | None,
    forward: tuple[np.ndarray, np.ndarray] | None,
    rcond: float,
    nullspace_limit: int,
    report: LayerReport,
) -> tuple[np.ndarray, LayerReport]:
    """Gradient constraints first (one SVD for all channels); what they leave open is filled from the forward
    constraints when given (``forward`` = known pre-activations and their mask), else set to zero."""
    C = geom.in_channels
    A = gradient_matrix(delta, geom)
    B = gradient_rhs(weight_grad, geom)
    # The dense null space is only needed for the null-space fill (small null spaces with forward constraints).
    # (With rows ≥ columns the reduced SVD already holds all of V, so the null space costs nothing extra.)
    max_nullity = geom.pixels - min(geom.gradient_rows, geom.pixels)
    need_null = forward is not None and (max_nullity == 0 or C * max_nullity <= nullspace_limit)
    solved = solve_gradient_constraints(A, B, rcond=rcond, need_null=need_null)
    report.gradient_rank_per_channel = solved.rank
    nullity = geom.pixels - solved.rank
    if nullity == 0:
        report.method, report.rank, report.deficiency, report.residual = "gradient", geom.unknowns, 0, solved.residual
        return to_image(solved.x, geom), report
    if forward is None:
        return _minimum_norm(geom, solved, nullity, report)
    zvec, known = forward
    x_p = solved.x.T.reshape(-1)  # channel-major like the forward matrix columns
    W = forward_matrix(weight, geom)[known]  # built only now: most layers never need it
    if C * nullity <= nullspace_limit and solved.null_basis.shape[1] == nullity:
        x = _fill_null_space_densely(geom, solved, W, zvec, x_p, rcond, report)
    else:
        operator, rhs, norms = _stacked_operator(geom, A, B, W, zvec, delta, weight, known)
        x = _solve_stacked_sparsely(geom, operator, rhs, norms, x_p, C * solved.rank + W.shape[0], report)
    forward_residual = relative_residual(W @ x - zvec, zvec)
    report.residual = max(forward_residual, relative_residual(_gradient_residual(A, B, x, geom), B))
    return x.reshape(C, geom.in_h, geom.in_w), report


def _minimum_norm(
    geom: ConvGeometry, solved: GradientSolve, nullity: int, report: LayerReport
) -> tuple[np.ndarray, LayerReport]:
    """Gradient constraints alone, under-determined: the minimum-norm solution, with the deficiency reported."""
    C = geom.in_channels
    report.method = "gradient-minnorm"
    report.rank, report.deficiency = geom.unknowns - C * nullity, C * nullity
    report.residual = solved.residual
    report.notes.append("under-determined: the null-space components of the input are set to zero")
    return to_image(solved.x, geom), report


def _fill_null_space_densely(
    geom: ConvGeometry,
    solved: GradientSolve,
    W: sp.spmatrix,
    zvec: np.ndarray,
    x_p: np.ndarray,
    rcond: float,
    report: LayerReport,
) -> np.ndarray:
    """``x = x_p + blockdiag(N) a`` with ``a`` the least-squares solution of ``W blockdiag(N) a = z − W x_p``: the
    forward rows decide only the part the gradient rows leave open (small null spaces)."""
    C, nullity, N = geom.in_channels, solved.null_basis.shape[1], solved.null_basis
    blocks = [W[:, c * geom.pixels : (c + 1) * geom.pixels] @ N for c in range(C)]
    M = np.hstack(blocks)
    target = zvec - W @ x_p
    coef, _, rank_m, _ = scipy.linalg.lstsq(M, target, cond=rcond, lapack_driver="gelsd")
    x = x_p + np.concatenate([N @ coef[c * nullity : (c + 1) * nullity] for c in range(C)])
    report.method = "stacked-nullspace"
    report.deficiency = C * nullity - int(rank_m)
    report.rank = geom.unknowns - report.deficiency
    return x


def _solve_stacked_sparsely(
    geom: ConvGeometry,
    operator: spla.LinearOperator,
    rhs: np.ndarray,
    norms: np.ndarray,
    x_p: np.ndarray,
    independent_rows: int,
    report: LayerReport,
) -> np.ndarray:
    """LSMR on the stacked [gradient; forward] operator from the gradient solution (big null spaces, first layers);
    the rank is the solver's numerical verdict, its deficiency bounded below by ``unknowns − independent_rows``."""
    x, full, how = lsmr_solve(operator, rhs, norms, x0=x_p)
    report.method = "stacked-sparse"
    report.notes.append(how)
    _set_rank(report, geom.unknowns, full, lower_bound=max(geom.unknowns - independent_rows, 0))
    return x


def _gradient_residual(A: sp.spmatrix, B: np.ndarray, x: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    return A @ x.reshape(geom.in_channels, geom.pixels).T - B


def _set_rank(report: LayerReport, unknowns: int, full: bool, lower_bound: int) -> None:
    if full:
        report.rank, report.deficiency, report.deficiency_exact = unknowns, 0, False
        report.notes.append("full column rank (numerical verdict of the sparse solver)")
    else:
        report.rank, report.deficiency, report.deficiency_exact = None, max(lower_bound, 1), False
        report.notes.append(f"rank deficient; deficiency ≥ {max(lower_bound, 1)} (lower bound)")


def to_image(x_channels: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    return x_channels.T.reshape(geom.in_channels, geom.in_h, geom.in_w)
