"""Linear systems of a convolutional layer, shared by R-CONV, R-GAP and the hybrid attack.

For one sample and a conv layer with input ``x`` (C×H×W), weights ``w`` (D×C×K×K), stride ``s``, zero padding ``p``,
pre-activation ``z`` (D×Ho×Wo) and back-propagated error ``delta = dL/dz``, two families of linear equations in ``x``
exist (R-GAP, Zhu & Blaschko 2021, arXiv 2010.07733; R-CONV, Eltaras et al. 2024, arXiv 2406.04227):

* gradient constraints ``dL/dw[d, c, u, v] = sum_{i,j} delta[d, i, j] * x[c, s*i + u - p, s*j + v - p]``: one row per
  (filter d, kernel offset u, v), one column per input pixel. The matrix ``A(delta)`` is the same for every input
  channel, so the system is ``A X = B`` with one right-hand side per channel (``B[(d,u,v), c] = dL/dw[d,c,u,v]``);
* forward constraints ``W x = z - b``: the convolution as a sparse matrix (rows = output units, columns = C·H·W), usable
  when the activation after the layer is invertible — and, for ReLU, on the rows of live units (``z = y`` there).

Zero-padding entries are known zeros and simply drop out of both systems. (R-GAP writes the systems on the padded
input with extra identity rows pinning the padding; that system has the same rank deficiency.)

Solving strategy (:func:`solve_layer`), all in float64:
1. gradient constraints per channel by SVD (one factorisation for all channels), giving a particular solution and the
   null space ``N`` of ``A``;
2. if ``A`` has full column rank, done (``D·K² ≥ H·W`` is necessary, not sufficient: stride and dead ReLUs cost rows);
3. otherwise, with forward constraints, fill the null space: ``x = x_p + blockdiag(N) a`` with ``a`` the least-squares
   solution of ``W blockdiag(N) a = z - W x_p`` (small when the null space is small), or, for big null spaces (first
   layers), a sparse least-squares solve of the stacked system;
4. without forward constraints the minimum-norm solution is returned and the deficiency reported.
No dense matrix larger than a per-channel system (or a null-space block) is ever formed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from torch import nn

from fedleak.attacks.activations import ActivationSpec, is_activation

# ----------------------------------------------------------------------------------------------------------------------
# Network structure
# ----------------------------------------------------------------------------------------------------------------------


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
    def unknowns_padded(self) -> int:
        return self.in_channels * (self.in_h + 2 * self.padding) * (self.in_w + 2 * self.padding)

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


# ----------------------------------------------------------------------------------------------------------------------
# The two constraint families
# ----------------------------------------------------------------------------------------------------------------------


def gradient_matrix(delta: np.ndarray, geom: ConvGeometry) -> sp.csr_matrix:
    """``A(delta)``: rows (filter d, offset u, v), columns input pixels (h, w) of one channel."""
    D, K, s, p = geom.out_channels, geom.kernel, geom.stride, geom.padding
    d, u, v, i, j = np.meshgrid(
        np.arange(D), np.arange(K), np.arange(K), np.arange(geom.out_h), np.arange(geom.out_w), indexing="ij"
    )
    h, w = s * i + u - p, s * j + v - p
    inside = (h >= 0) & (h < geom.in_h) & (w >= 0) & (w < geom.in_w)
    rows = ((d * K + u) * K + v)[inside]
    cols = (h * geom.in_w + w)[inside]
    values = np.asarray(delta, dtype=np.float64).reshape(D, geom.out_h, geom.out_w)[d[inside], i[inside], j[inside]]
    return sp.csr_matrix((values, (rows, cols)), shape=(geom.gradient_rows, geom.pixels))


def gradient_rhs(weight_grad: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """``B``: one column per input channel, rows ordered like :func:`gradient_matrix`."""
    g = np.asarray(weight_grad, dtype=np.float64).reshape(geom.out_channels, geom.in_channels, -1)
    return g.transpose(0, 2, 1).reshape(geom.gradient_rows, geom.in_channels)


def forward_matrix(weight: np.ndarray, geom: ConvGeometry) -> sp.csr_matrix:
    """The convolution as a sparse matrix: rows (d, i, j), columns (c, h, w); padding entries dropped."""
    D, C, K, s, p = geom.out_channels, geom.in_channels, geom.kernel, geom.stride, geom.padding
    d, i, j, c, u, v = np.meshgrid(
        np.arange(D),
        np.arange(geom.out_h),
        np.arange(geom.out_w),
        np.arange(C),
        np.arange(K),
        np.arange(K),
        indexing="ij",
    )
    h, w = s * i + u - p, s * j + v - p
    inside = (h >= 0) & (h < geom.in_h) & (w >= 0) & (w < geom.in_w)
    rows = ((d * geom.out_h + i) * geom.out_w + j)[inside]
    cols = ((c * geom.in_h + h) * geom.in_w + w)[inside]
    values = np.asarray(weight, dtype=np.float64)[d[inside], c[inside], u[inside], v[inside]]
    return sp.csr_matrix((values, (rows, cols)), shape=(geom.forward_rows, geom.unknowns))


def input_gradient(delta: np.ndarray, weight: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """``dL/dx`` of the layer input (C×H×W) from ``delta = dL/dz`` (a transposed convolution), float64."""
    grad = torch.nn.grad.conv2d_input(
        (1, geom.in_channels, geom.in_h, geom.in_w),
        torch.as_tensor(np.asarray(weight, dtype=np.float64)),
        torch.as_tensor(np.asarray(delta, dtype=np.float64)).reshape(1, geom.out_channels, geom.out_h, geom.out_w),
        stride=geom.stride,
        padding=geom.padding,
    )
    return grad[0].numpy()


def conv_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, geom: ConvGeometry) -> np.ndarray:
    """The layer's pre-activation for input ``x`` (C×H×W), float64."""
    out = torch.nn.functional.conv2d(
        torch.as_tensor(np.asarray(x, dtype=np.float64)).reshape(1, geom.in_channels, geom.in_h, geom.in_w),
        torch.as_tensor(np.asarray(weight, dtype=np.float64)),
        None if bias is None else torch.as_tensor(np.asarray(bias, dtype=np.float64)),
        stride=geom.stride,
        padding=geom.padding,
    )
    return out[0].numpy()


# ----------------------------------------------------------------------------------------------------------------------
# Solving
# ----------------------------------------------------------------------------------------------------------------------


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
    residual = _relative(dense @ x - B, B)
    null_basis = Vt[rank:].T if need_null else np.zeros((n, 0))
    return GradientSolve(x=x, rank=rank, null_basis=null_basis, residual=residual)


def _relative(error: np.ndarray, reference: np.ndarray) -> float:
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
    shape_x = (1, C, geom.in_h, geom.in_w)
    w = torch.as_tensor(np.asarray(weight, dtype=np.float64))
    d = torch.as_tensor(np.asarray(delta, dtype=np.float64)).reshape(1, D, geom.out_h, geom.out_w)
    mask = torch.as_tensor(known)
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
        z = torch.nn.functional.conv2d(x, w, stride=s, padding=p).reshape(-1)[mask]
        return torch.cat([g / k_rms, z / w_rms]).numpy()

    def rmatvec(r: np.ndarray) -> np.ndarray:
        r = torch.as_tensor(np.asarray(r).reshape(-1))
        rk = (r[:n_k] / k_rms).reshape(C, D, K, K).permute(1, 0, 2, 3)
        rw = torch.zeros(D * geom.out_h * geom.out_w, dtype=torch.float64)
        rw[mask] = r[n_k:] / w_rms
        back = torch.nn.grad.conv2d_input(shape_x, rk.contiguous(), d, stride=s, padding=p)
        back = back + torch.nn.grad.conv2d_input(shape_x, w, rw.reshape(1, D, geom.out_h, geom.out_w), stride=s,
                                                 padding=p)
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
    C = geom.in_channels
    use_forward = use_forward and weight is not None and z is not None
    use_gradient = use_gradient and delta is not None and weight_grad is not None
    if not (use_forward or use_gradient):
        raise ValueError(f"layer {name}: no constraints to solve with")
    report = LayerReport(
        layer=name,
        method="",
        unknowns=geom.unknowns,
        rank=None,
        deficiency=None,
        deficiency_exact=True,
        gradient_rank_per_channel=None,
        gradient_rows=geom.gradient_rows * C if use_gradient else 0,
        forward_rows=geom.forward_rows if use_forward else None,
        filters_kernel_condition=geom.filters_kernel_condition,
        residual=float("nan"),
    )
    zvec = known = None
    if use_forward:
        # NaN entries of z are unknown pre-activations (dead ReLU units): their rows are dropped.
        zvec = np.asarray(z, dtype=np.float64).reshape(-1)
        known = np.isfinite(zvec)
        zvec = zvec[known]
        report.forward_rows = int(known.sum())

    if not use_gradient:
        W = forward_matrix(weight, geom)[known]
        x, full, how = sparse_lstsq(*_scaled(W, zvec))
        report.method, report.notes = "forward", [how]
        _set_rank(report, geom.unknowns, full, lower_bound=max(geom.unknowns - W.shape[0], 0))
        report.residual = _relative(W @ x - zvec, zvec)
        return x.reshape(C, geom.in_h, geom.in_w), report

    A = gradient_matrix(delta, geom)
    B = gradient_rhs(weight_grad, geom)
    # The dense null space is only needed for the null-space fill (small null spaces with forward constraints).
    # (With rows ≥ columns the reduced SVD already holds all of V, so the null space costs nothing extra.)
    max_nullity = geom.pixels - min(geom.gradient_rows, geom.pixels)
    need_null = use_forward and (max_nullity == 0 or C * max_nullity <= nullspace_limit)
    solved = solve_gradient_constraints(A, B, rcond=rcond, need_null=need_null)
    report.gradient_rank_per_channel = solved.rank
    nullity = geom.pixels - solved.rank
    x_channels = solved.x  # pixels × C

    if nullity == 0:
        report.method, report.rank, report.deficiency, report.residual = "gradient", geom.unknowns, 0, solved.residual
        return _to_image(x_channels, geom), report

    if not use_forward:
        report.method = "gradient-minnorm"
        report.rank, report.deficiency = geom.unknowns - C * nullity, C * nullity
        report.residual = solved.residual
        report.notes.append("under-determined: the null-space components of the input are set to zero")
        return _to_image(x_channels, geom), report

    x_p = x_channels.T.reshape(-1)  # channel-major like the forward matrix columns
    W = forward_matrix(weight, geom)[known]  # built only now: most layers never need it
    if C * nullity <= nullspace_limit and solved.null_basis.shape[1] == nullity:
        N = solved.null_basis
        blocks = [W[:, c * geom.pixels : (c + 1) * geom.pixels] @ N for c in range(C)]
        M = np.hstack(blocks)
        target = zvec - W @ x_p
        coef, _, rank_m, _ = scipy.linalg.lstsq(M, target, cond=rcond, lapack_driver="gelsd")
        x = x_p + np.concatenate([N @ coef[c * nullity : (c + 1) * nullity] for c in range(C)])
        report.method = "stacked-nullspace"
        report.deficiency = C * nullity - int(rank_m)
        report.rank = geom.unknowns - report.deficiency
    else:
        operator, rhs, norms = _stacked_operator(geom, A, B, W, zvec, delta, weight, known)
        x, full, how = lsmr_solve(operator, rhs, norms, x0=x_p)
        report.method = "stacked-sparse"
        report.notes.append(how)
        lower = max(geom.unknowns - C * solved.rank - W.shape[0], 0)
        _set_rank(report, geom.unknowns, full, lower_bound=lower)
    report.residual = max(_relative(W @ x - zvec, zvec), _relative(_gradient_residual(A, B, x, geom), B))
    return x.reshape(C, geom.in_h, geom.in_w), report


def _gradient_residual(A: sp.spmatrix, B: np.ndarray, x: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    return A @ x.reshape(geom.in_channels, geom.pixels).T - B


def _set_rank(report: LayerReport, unknowns: int, full: bool, lower_bound: int) -> None:
    if full:
        report.rank, report.deficiency, report.deficiency_exact = unknowns, 0, False
        report.notes.append("full column rank (numerical verdict of the sparse solver)")
    else:
        report.rank, report.deficiency, report.deficiency_exact = None, max(lower_bound, 1), False
        report.notes.append(f"rank deficient; deficiency ≥ {max(lower_bound, 1)} (lower bound)")


def _to_image(x_channels: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    return x_channels.T.reshape(geom.in_channels, geom.in_h, geom.in_w)


# ----------------------------------------------------------------------------------------------------------------------
# The backward walk: FC layer first, then every conv layer from the last to the first
# ----------------------------------------------------------------------------------------------------------------------

#: (layer, is_first_layer) -> (use gradient constraints, use forward constraints)
LayerPolicy = Callable[[ConvLayer, bool], tuple[bool, bool]]


@dataclass
class LayerSystem:
    """The data of one layer's linear system, handed to a refiner (the hybrid correction)."""

    delta: np.ndarray  # dL/dz, D×Ho×Wo
    weight_grad: np.ndarray  # observed dL/dw, D×C×K×K
    weight: np.ndarray  # D×C×K×K
    z: np.ndarray | None  # pre-activation minus bias (NaN where unknown); None without forward constraints
    report: LayerReport


#: (layer index, layer, least-squares input C×H×W, its system) -> corrected input (the hybrid attack's refinement)
Refiner = Callable[[int, ConvLayer, np.ndarray, LayerSystem], np.ndarray]


@dataclass
class WalkResult:
    image: np.ndarray  # C×H×W, float64
    reports: list[LayerReport]
    fc_input: np.ndarray
    layer_inputs: list[np.ndarray]  # recovered input of every conv layer, first layer first
    bias_checks: dict[str, float]  # relative mismatch of sum(delta) against the observed bias gradient


@contextlib.contextmanager
def blas_threads(limit: int | None):
    """Limit BLAS (when threadpoolctl is installed) and torch intra-op threads for the small solves of the walk.

    The per-layer systems and convolutions are small; on a busy 2-core machine a 400×256 SVD took 1.0 s with two
    OpenBLAS threads and 0.03 s with one, and a float64 32×32 convolution 12.5 ms with two torch threads and 0.04 ms
    with one (spinning threads compete with other processes), so one thread is the default.
    """
    if limit is None:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        blas = contextlib.nullcontext()
    else:
        blas = threadpool_limits(limits=limit, user_api="blas")
    previous = torch.get_num_threads()
    torch.set_num_threads(limit)
    try:
        with blas:
            yield
    finally:
        torch.set_num_threads(previous)


def invert_network(
    net: Network,
    weights: dict[str, np.ndarray],
    grads: dict[str, np.ndarray],
    policy: LayerPolicy,
    rcond: float = 1e-10,
    dead_tol: float = 1e-5,
    nullspace_limit: int = 1500,
    refine: Refiner | None = None,
    threads: int | None = 1,
) -> WalkResult:
    """Recover the network input layer by layer from one sample's gradients (float64 throughout).

    Args:
        net: the parsed network.
        weights / grads: float64 arrays keyed like ``model.state_dict()`` / the observed update.
        policy: which constraint families to use for each conv layer.
        rcond, dead_tol, nullspace_limit: see :func:`solve_layer` and
            :func:`~fedleak.attacks.activations.derivative_from_output`.
        refine: optional correction of each layer's least-squares input before it is passed on.
        threads: BLAS threads for the dense solves (None leaves the library default), see :func:`blas_threads`.
    """
    with blas_threads(threads):
        return _walk(net, weights, grads, policy, rcond, dead_tol, nullspace_limit, refine)


def _walk(
    net: Network,
    weights: dict[str, np.ndarray],
    grads: dict[str, np.ndarray],
    policy: LayerPolicy,
    rcond: float,
    dead_tol: float,
    nullspace_limit: int,
    refine: Refiner | None,
) -> WalkResult:
    from fedleak.attacks.activations import derivative_from_output, inverse
    from fedleak.attacks.fc_inversion import fc_input_gradient, invert_fc

    fc_w, fc_gw, fc_gb = weights[f"{net.fc_name}.weight"], grads[f"{net.fc_name}.weight"], grads[f"{net.fc_name}.bias"]
    x_next = invert_fc(torch.as_tensor(fc_gw), torch.as_tensor(fc_gb)).numpy()
    dx_next = fc_input_gradient(torch.as_tensor(fc_w), torch.as_tensor(fc_gb)).numpy()
    fc_input = x_next.copy()

    reports: list[LayerReport] = []
    inputs: list[np.ndarray] = []
    bias_checks: dict[str, float] = {}
    for index in range(len(net.convs) - 1, -1, -1):
        layer = net.convs[index]
        geom = layer.geometry
        y = x_next.reshape(geom.out_channels, geom.out_h, geom.out_w)
        # The FC input comes from ratios of gradient entries: a dead unit's row is exactly zero there, so no
        # tolerance is needed; deeper outputs come from solves and carry their rounding.
        tol = 0.0 if index == len(net.convs) - 1 else dead_tol
        delta = dx_next.reshape(y.shape) * derivative_from_output(y, layer.activation, dead_tol=tol)
        weight = weights[f"{layer.name}.weight"]
        bias = weights.get(f"{layer.name}.bias") if layer.has_bias else None
        if bias is not None:
            observed = grads[f"{layer.name}.bias"]
            bias_checks[layer.name] = _relative(delta.sum(axis=(1, 2)) - observed, observed)
        use_gradient, use_forward = policy(layer, index == 0)
        z = None
        if use_forward:
            if layer.activation.invertible:
                z = inverse(y, layer.activation)
            else:  # ReLU: a live unit's pre-activation is its output; a dead unit's is unknown (NaN row, dropped)
                alive = derivative_from_output(y, layer.activation, dead_tol=tol) > 0
                z = np.where(alive, y, np.nan)
            if bias is not None:
                z = z - bias[:, None, None]
        x, report = solve_layer(
            geom,
            layer.name,
            delta,
            grads[f"{layer.name}.weight"],
            weight=weight,
            z=z,
            use_gradient=use_gradient,
            use_forward=use_forward,
            rcond=rcond,
            nullspace_limit=nullspace_limit,
        )
        if refine is not None:
            x = refine(index, layer, x, LayerSystem(delta, grads[f"{layer.name}.weight"], weight, z, report))
        reports.append(report)
        inputs.append(x)
        x_next = x.reshape(-1)
        dx_next = input_gradient(delta, weight, geom).reshape(-1)
    reports.reverse()
    inputs.reverse()
    return WalkResult(x_next.reshape(net.input_shape), reports, fc_input, inputs, bias_checks)


def numpy_params(tensors: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """float64 numpy copies of a state or gradient dict."""
    return {k: v.detach().cpu().to(torch.float64).numpy() for k, v in tensors.items()}


def copa_index(deficiencies: list[int | None]) -> int | None:
    """The hybrid paper's security index from per-conv-layer rank deficiencies (first layer first).

    ``COPA = sum_j round(-d_j (M - j - 1) / (M - 1))`` with ``M`` = number of modules (conv layers + the FC layer):
    deficiencies near the input weigh most. 0 means every layer is uniquely solvable; more negative is more private.
    None when a deficiency is unknown.
    """
    if any(d is None for d in deficiencies):
        return None
    modules = len(deficiencies) + 1
    return int(sum(round(-d * (modules - j - 1) / (modules - 1)) for j, d in enumerate(deficiencies)))
