"""Architecture audit: can the analytic attacks invert a model's update exactly, before any data is shared?

For every conv layer of a conv (+activation) … → FC (with bias) network, the layer's input is the unknown of two
families of linear equations (:mod:`fedleak.attacks.conv_constraints`): gradient constraints ``A(delta) x_c = dL/dw_c``
(one system per input channel, R-CONV: Eltaras et al., WISE 2024, arXiv 2406.04227) and forward constraints
``W x = z`` (R-GAP: Zhu & Blaschko, ICLR 2021, arXiv 2010.07733). The audit builds both for the registry model's own
initialisation and the error signal of one random probe input (no data), in float64, and reports per layer the
number of unknowns and constraints, their ranks and the deficiency.

Stride: a row (filter d, kernel offset u, v) of ``A`` only touches pixels with ``h = s·i + u − p``, i.e.
``h ≡ u − p (mod s)``. So ``A`` splits into s² independent blocks, one per pixel residue class (h mod s, w mod s), and
each block must have full column rank on its own: ``filters · kernel² ≥ H · W`` is not enough when one class gets
fewer kernel offsets than it has pixels (DLG's LeNet, layer 2: the odd/odd class has 12·2·2 = 48 rows for 64 pixels).

Verdict, from strongest to weakest:
- ``rconv``: R-CONV as published — gradient constraints alone in every layer but the first, which may stack forward
  constraints when its activation is invertible;
- ``rgap``: R-GAP's stacked gradient + forward constraints are full rank in every layer (after a ReLU only live units
  give forward rows; the ``rgap`` attack refuses ReLU, ``rconv`` with its default forward fill solves it);
- ``hybrid``: some layer stays rank deficient, so no analytic attack is exact; the hybrid method (Chen & Campbell,
  BMVC 2022, arXiv 2210.13231) fills the null space approximately by gradient matching;
- ``none``: outside the family the analytic attacks handle (pooling, normalisation, several FC layers), or B > 1.

The security metric is the weighted deficiency that the hybrid paper's reference code prints as the "COPA index"
(:func:`~fedleak.attacks.conv_systems.copa_index`), computed on R-GAP's stacked system; R-GAP's own rank analysis is
the per-layer deficiency, summed here as ``total_deficiency``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import scipy.linalg
import torch

from fedleak.attacks.conv_constraints import forward_matrix, gradient_matrix
from fedleak.attacks.conv_network import ConvGeometry, ConvLayer, Network, parse_network
from fedleak.attacks.conv_systems import copa_index
from fedleak.data.imageset import dataset_info
from fedleak.errors import UserError
from fedleak.models import MODELS, get_model
from fedleak.models.registry import ACTIVATIONS
from fedleak.training import loss_of

#: Relative singular-value cut-off, the analytic attacks' default ``rcond``: the audit counts the rank they see.
RCOND = 1e-10
#: Probe inputs audited when a ReLU makes the ranks depend on the input.
RELU_PROBES = 4
#: Largest dense matrix (entries) whose rank the audit computes exactly; beyond it the rank is a bound.
MAX_DENSE = 12_000_000

VERDICTS = {
    "rconv": "exactly recoverable by R-CONV (gradient constraints; forward constraints only in the first layer)",
    "rgap": "exactly recoverable by R-GAP (stacked gradient + forward constraints), not by R-CONV as published",
    "hybrid": "not exactly recoverable: a layer is rank deficient; the hybrid method approximates its null space",
    "none": "not analytically",
    "undetermined": "undetermined: a layer's system is too large to factor here (raise --max-dense)",
}


@dataclass
class ResidueClass:
    """One stride residue class of a layer's gradient system (per input channel)."""

    residue: tuple[int, int]  # (h mod s, w mod s) of the input pixels in this class
    rows: int  # gradient constraints that touch this class: filters × kernel offsets in the class
    pixels: int
    rank: int

    @property
    def full(self) -> bool:
        return self.rank == self.pixels

    @property
    def enough_rows(self) -> bool:
        """The counting condition for this class on its own: at least as many constraints as pixels."""
        return self.rows >= self.pixels


@dataclass
class LayerAudit:
    """Counts and ranks of one layer's constraints on its input (all ranks over all input channels)."""

    layer: str
    kind: str  # conv | fc
    input_shape: tuple[int, ...]
    kernel: int | None
    stride: int | None
    padding: int | None
    filters: int
    activation: str
    unknowns: int
    gradient_constraints: int
    forward_constraints: int | None  # None: the activation is not invertible and has no live units to use
    gradient_rank: int | None
    stacked_rank: int | None
    deficiency: int | None  # unknowns − stacked rank (R-GAP's system); a lower bound when not exact
    rank_exact: bool
    gradient_full: bool  # every residue class full rank: R-CONV's gradient constraints alone suffice
    residue_classes: list[ResidueClass] = field(default_factory=list)
    #: R-CONV's pooled count ``filters · kernel² ≥ H · W`` (None for the FC layer).
    pooled_condition: bool | None = None
    #: The pooled count holds, yet some stride residue class is under-determined on its own: the stride-blind
    #: condition says "enough" where gradient constraints alone are not.
    stride_hidden_deficiency: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class AuditReport:
    model: str
    dataset: str
    activation: str | None
    batch_size: int
    input_shape: tuple[int, int, int]
    parameters: int
    probe: str
    layers: list[LayerAudit]
    verdict: str
    verdict_text: str
    reasons: list[str]
    copa: int | None  # the hybrid paper's security metric ("COPA index" in its code); 0 = every layer unique
    total_deficiency: int | None  # R-GAP's rank analysis summed over the conv layers
    probe_verdicts: list[str] = field(default_factory=list)  # one per probe input (several only after a ReLU)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for layer, source in zip(data["layers"], self.layers, strict=True):
            for entry, cls in zip(layer["residue_classes"], source.residue_classes, strict=True):
                entry["full"] = cls.full
                entry["enough_rows"] = cls.enough_rows
        return data


def residue_blocks(geom: ConvGeometry) -> list[tuple[tuple[int, int], np.ndarray, np.ndarray]]:
    """The s² independent blocks of ``A(delta)``: (pixel residue, its rows, its columns) in ``gradient_matrix`` order.

    Row (d, u, v) touches pixels with ``h ≡ u − p`` and ``w ≡ v − p (mod s)`` only, so rows and columns split by that
    residue; a residue no kernel offset reaches has rows of length zero (and its pixels stay unknown).
    """
    s, K, p = geom.stride, geom.kernel, geom.padding
    d, u, v = np.meshgrid(np.arange(geom.out_channels), np.arange(K), np.arange(K), indexing="ij")
    rows_all = ((d * K + u) * K + v).ravel()
    ru, rv = ((u - p) % s).ravel(), ((v - p) % s).ravel()
    h, w = np.meshgrid(np.arange(geom.in_h), np.arange(geom.in_w), indexing="ij")
    cols_all = (h * geom.in_w + w).ravel()
    ch, cw = (h % s).ravel(), (w % s).ravel()
    blocks = []
    for a in range(s):
        for b in range(s):
            blocks.append(((a, b), rows_all[(ru == a) & (rv == b)], cols_all[(ch == a) & (cw == b)]))
    return blocks


def numerical_rank(matrix: np.ndarray, rcond: float = RCOND) -> int:
    """Singular values above ``rcond`` × the largest (the cut-off the attacks' solvers use)."""
    if matrix.size == 0:
        return 0
    values = scipy.linalg.svdvals(matrix, check_finite=False)
    return int((values > rcond * values[0]).sum()) if values[0] > 0 else 0


def gradient_ranks(delta: np.ndarray, geom: ConvGeometry, rcond: float = RCOND) -> list[ResidueClass]:
    """Rank of every residue block of the per-channel gradient system for this ``delta``."""
    A = gradient_matrix(delta, geom).toarray()
    classes = []
    for residue, rows, cols in residue_blocks(geom):
        block = A[np.ix_(rows, cols)]
        classes.append(ResidueClass(residue, int(len(rows)), int(len(cols)), numerical_rank(block, rcond)))
    return classes


def stacked_rank(
    delta: np.ndarray,
    weight: np.ndarray,
    geom: ConvGeometry,
    live: np.ndarray | None,
    rcond: float = RCOND,
    max_dense: int = MAX_DENSE,
) -> tuple[int, bool]:
    """Rank of R-GAP's stacked system [gradient; forward] on the layer input, and whether it is exact.

    ``rank = C · rank(A) + rank(W N)`` with ``N`` the block-diagonal null space of ``A`` (one block per channel): the
    forward rows only add what the gradient rows leave open. ``live`` selects the forward rows (None: no forward rows).
    Above ``max_dense`` entries the rank is the upper bound ``min(unknowns, C · rank(A) + forward rows)``.
    """
    C = geom.in_channels
    A = gradient_matrix(delta, geom).toarray()
    _, S, Vt = scipy.linalg.svd(A, full_matrices=True, lapack_driver="gesdd")
    rank_a = int((S > rcond * S[0]).sum()) if S.size and S[0] > 0 else 0
    nullity = geom.pixels - rank_a
    rows = 0 if live is None else int(live.sum())
    if nullity == 0 or rows == 0:
        return C * rank_a, True
    if rows * C * nullity > max_dense:
        return min(geom.unknowns, C * rank_a + rows), False
    N = Vt[rank_a:].T  # pixels × nullity
    W = forward_matrix(weight, geom)[np.flatnonzero(live)]
    M = np.hstack([W[:, c * geom.pixels : (c + 1) * geom.pixels] @ N for c in range(C)])
    return C * rank_a + numerical_rank(M, rcond), True


@dataclass
class _Probe:
    """What one backward pass on a random input gives each conv layer: ``delta = dL/dz`` and ``z``."""

    delta: dict[str, np.ndarray]
    z: dict[str, np.ndarray]
    fc_bias_grad: np.ndarray


def _probe(model: torch.nn.Module, net: Network, seed: int) -> tuple[_Probe, str]:
    """One float64 forward/backward pass on a seeded random input and a seeded label: no data involved.

    The input is a 4×4 uniform(0, 1) image upsampled bilinearly to the input size: natural images are dominated by
    low frequencies, and which ReLU units die depends on that (white noise kills fewer units in some networks).
    """
    generator = torch.Generator().manual_seed(seed)
    model = model.double()
    C, H, W = net.input_shape
    low = torch.rand((1, C, 4, 4), generator=generator, dtype=torch.float64)
    x = torch.nn.functional.interpolate(low, size=(H, W), mode="bilinear", align_corners=False)
    label = torch.randint(net.fc.out_features, (1,), generator=generator)
    outputs: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(module, inputs, output):
            output.retain_grad()
            outputs[name] = output

        return hook

    handles = [layer.module.register_forward_hook(keep(layer.name)) for layer in net.convs]
    try:
        with torch.enable_grad():
            loss_of(model)(model(x), label).backward()
        bias_grad = net.fc.bias.grad.detach().clone().numpy()
    finally:
        for handle in handles:
            handle.remove()
        model.zero_grad(set_to_none=True)
    delta = {name: out.grad[0].detach().numpy() for name, out in outputs.items()}
    z = {name: out[0].detach().numpy() for name, out in outputs.items()}
    return _Probe(delta, z, bias_grad), f"smooth random input (4×4 uniform, upsampled), label {int(label)}, seed {seed}"


def _forward_rows(layer: ConvLayer, z: np.ndarray) -> tuple[np.ndarray | None, list[str]]:
    """Which forward constraints exist: all units after an invertible activation, the live ones after a ReLU."""
    if layer.activation.invertible:
        return np.ones(z.size, dtype=bool), []
    live = (z > 0).reshape(-1)
    note = f"ReLU: forward rows only from the {int(live.sum())} of {z.size} units live on the probe"
    return (live if live.any() else None), [note]


def audit_conv_layer(
    layer: ConvLayer, weight: np.ndarray, delta: np.ndarray, z: np.ndarray, max_dense: int = MAX_DENSE
) -> LayerAudit:
    """Counts, per-residue-class gradient ranks and R-GAP's stacked rank for one conv layer."""
    geom = layer.geometry
    classes = gradient_ranks(delta, geom)
    live, notes = _forward_rows(layer, z)
    rank, exact = stacked_rank(delta, weight, geom, live, max_dense=max_dense)
    gradient_rank = geom.in_channels * sum(c.rank for c in classes)
    if not exact:
        notes.append("stacked rank is an upper bound (system too large to factor densely): deficiency ≥ the value")
    missing = [c for c in classes if not c.full]
    if missing and geom.stride > 1:
        short = ", ".join(f"{c.residue}: rank {c.rank}/{c.pixels}" for c in missing)
        notes.append(f"stride {geom.stride}: residue classes short of full rank: {short}")
    hidden = geom.filters_kernel_condition and bool(missing)
    if hidden:
        notes.append(stride_hidden_note(geom, missing))
    return LayerAudit(
        layer=layer.name,
        kind="conv",
        input_shape=(geom.in_channels, geom.in_h, geom.in_w),
        kernel=geom.kernel,
        stride=geom.stride,
        padding=geom.padding,
        filters=geom.out_channels,
        activation=_activation_name(layer),
        unknowns=geom.unknowns,
        gradient_constraints=geom.in_channels * geom.gradient_rows,
        forward_constraints=None if live is None else int(live.sum()),
        gradient_rank=gradient_rank,
        stacked_rank=rank,
        deficiency=geom.unknowns - rank,
        rank_exact=exact,
        gradient_full=not missing,
        residue_classes=classes,
        notes=notes,
        pooled_condition=geom.filters_kernel_condition,
        stride_hidden_deficiency=hidden,
    )


def stride_hidden_note(geom: ConvGeometry, short: list[ResidueClass]) -> str:
    """Why a layer that passes the pooled count is still under-determined: the classes that fail on their own."""
    worst = min(short, key=lambda c: c.rank - c.pixels)
    cause = (f"{worst.rows} rows for {worst.pixels} pixels" if not worst.enough_rows
             else f"rank {worst.rank} of {worst.pixels} pixels ({worst.rows} rows)")
    return (f"stride-hidden deficiency: filters·kernel² = {geom.gradient_rows} ≥ {geom.pixels} = H·W, yet "
            f"{len(short)} of {geom.stride ** 2} residue classes are under-determined on their own (class "
            f"{worst.residue}: {cause})")


def _activation_name(layer: ConvLayer) -> str:
    spec = layer.activation
    return f"leaky_relu({spec.negative_slope:g})" if spec.kind == "leaky_relu" else spec.kind


def audit_fc_layer(net: Network, bias_grad: np.ndarray) -> LayerAudit:
    """The FC layer: its input is a weight-gradient row over the bias gradient (one sample), exact when g ≠ 0."""
    n, m = net.fc.in_features, net.fc.out_features
    recoverable = bool(np.any(bias_grad != 0))
    notes = [] if recoverable else ["the bias gradient is zero on the probe (saturated softmax): no FC row to divide"]
    return LayerAudit(
        layer=net.fc_name, kind="fc", input_shape=(n,), kernel=None, stride=None, padding=None, filters=m,
        activation="softmax cross-entropy", unknowns=n, gradient_constraints=m * n + m, forward_constraints=None,
        gradient_rank=n if recoverable else 0, stacked_rank=n if recoverable else 0,
        deficiency=0 if recoverable else n, rank_exact=True, gradient_full=recoverable, notes=notes,
    )


def build_audited_model(
    model: str, dataset: str, activation: str | None, image_size: int | None
) -> tuple[torch.nn.Module, tuple[int, int, int]]:
    """The registry model for the dataset's input shape, seeded like a simulation's; bad input names its option."""
    try:
        MODELS.get(model)
    except UserError as exc:
        raise UserError(f"--model: {exc}") from None
    try:
        info = dataset_info(dataset)
    except UserError as exc:
        raise UserError(f"--dataset: {exc}") from None
    if activation is not None and activation not in ACTIVATIONS:
        raise UserError(f"--activation: unknown activation {activation!r}; choose one of: {', '.join(ACTIVATIONS)}")
    if image_size is not None and image_size < 1:
        raise UserError(f"--image-size: must be a positive number of pixels, got {image_size}")
    size = image_size or info.native_size
    # LFW's label space comes from its source; the bundled set has 100 identities.
    classes = info.num_classes or 100
    try:
        built = get_model(model, in_channels=info.channels, image_size=size, num_classes=classes,
                          activation=activation)
    except (ValueError, TypeError) as exc:
        option = "--activation" if activation is not None and "activation" in str(exc) else "--image-size"
        raise UserError(f"{option}: model {model!r} cannot be built for {info.channels}×{size}×{size}: {exc}") from None
    return built, (info.channels, size, size)


def audit(
    model: str,
    dataset: str,
    activation: str | None = None,
    batch_size: int = 1,
    image_size: int | None = None,
    seed: int = 0,
    max_dense: int = MAX_DENSE,
    probes: int = RELU_PROBES,
) -> AuditReport:
    """Audit one registry model for one dataset's input shape (see the module docstring).

    Without ReLU the ranks do not depend on the input (no unit is ever switched off), so one probe serves. After a
    ReLU, dead units remove rows and the ranks depend on the input: ``probes`` inputs are audited, the verdict is the
    most frequent one (ties: the weaker), and the table shows a probe that gave it.
    """
    if batch_size < 1:
        raise UserError(f"--batch-size: must be at least 1, got {batch_size}")
    if probes < 1:
        raise UserError(f"--probes: must be at least 1, got {probes}")
    torch.manual_seed(seed)
    built, shape = build_audited_model(model, dataset, activation, image_size)
    parameters = sum(p.numel() for p in built.parameters())
    empty = AuditReport(model, dataset, activation, batch_size, shape, parameters, probe="", layers=[],
                        verdict="none", verdict_text=VERDICTS["none"], reasons=[], copa=None, total_deficiency=None)
    try:
        net = parse_network(built, shape)
    except ValueError as exc:
        empty.reasons.append(f"outside the analytic attacks' family: {exc}")
        return empty
    has_relu = any(layer.activation.kind == "relu" for layer in net.convs)
    reports = [_audit_probe(empty, built, net, seed + k, max_dense) for k in range(probes if has_relu else 1)]
    report = _representative(reports)
    if batch_size > 1:
        _batch_bounds(report)
    return report


def _audit_probe(empty: AuditReport, built: torch.nn.Module, net: Network, seed: int, max_dense: int) -> AuditReport:
    """The per-layer audit and verdict for one probe input."""
    report = replace(empty, layers=[], reasons=[])
    probe, report.probe = _probe(built, net, seed)
    for layer in net.convs:
        weight = layer.module.weight.detach().double().numpy()
        report.layers.append(
            audit_conv_layer(layer, weight, probe.delta[layer.name], probe.z[layer.name], max_dense)
        )
    report.layers.append(audit_fc_layer(net, probe.fc_bias_grad))
    deficiencies = [lay.deficiency if lay.rank_exact else None for lay in report.layers[:-1]]
    report.copa = copa_index(deficiencies)
    report.total_deficiency = None if None in deficiencies else sum(deficiencies)
    _decide(report, net)
    return report


def _representative(reports: list[AuditReport]) -> AuditReport:
    """The most frequent verdict over the probes (ties: the weaker), shown with the first probe that gave it."""
    counts = Counter(r.verdict for r in reports)
    strength = list(VERDICTS)  # strongest first
    verdict = max(counts, key=lambda v: (counts[v], strength.index(v)))
    report = next(r for r in reports if r.verdict == verdict)
    report.probe_verdicts = [r.verdict for r in reports]
    if len(reports) > 1:
        tally = ", ".join(f"{v} on {counts[v]}" for v in strength if v in counts)
        report.reasons.append(f"ReLU: dead units remove rows, so ranks depend on the input; verdicts over "
                              f"{len(reports)} probe inputs: {tally} (the table shows one that gave {verdict})")
    return report


def _decide(report: AuditReport, net: Network) -> None:
    """The verdict from the per-layer ranks, strongest attack first, with the layers that decide it."""
    convs, fc = report.layers[:-1], report.layers[-1]
    reasons = report.reasons
    if fc.deficiency:
        reasons.append(f"{fc.layer}: {fc.notes[0]}")
        report.verdict, report.verdict_text = "none", f"{VERDICTS['none']}: the FC input is not recoverable"
        return
    rconv_short = []
    for index, (lay, layer) in enumerate(zip(convs, net.convs, strict=True)):
        first_ok = index == 0 and layer.activation.invertible and lay.rank_exact and lay.deficiency == 0
        if not (lay.gradient_full or first_ok):
            rconv_short.append(lay)
    deficient = [lay for lay in convs if lay.deficiency]
    unverified = [lay for lay in convs if not lay.rank_exact and not lay.deficiency]
    for lay in rconv_short:
        worst = [c for c in lay.residue_classes if not c.full]
        classes = "; ".join(f"class {c.residue} rank {c.rank}/{c.pixels} ({c.rows} rows)" for c in worst)
        hidden = "; stride-hidden: the pooled count filters·kernel² ≥ H·W holds" if lay.stride_hidden_deficiency else ""
        reasons.append(f"{lay.layer}: gradient constraints alone are rank deficient ({classes}{hidden})")
    for lay in deficient:
        bound = "" if lay.rank_exact else "at least "
        reasons.append(f"{lay.layer}: stacked gradient + forward constraints deficient by {bound}{lay.deficiency}")
    for lay in unverified:
        reasons.append(f"{lay.layer}: stacked rank not verified (upper bound {lay.stacked_rank} of {lay.unknowns})")
    if deficient:
        key = "hybrid"
    elif unverified:
        key = "undetermined"
    else:
        key = "rgap" if rconv_short else "rconv"
    report.verdict, report.verdict_text = key, VERDICTS[key]


def _batch_bounds(report: AuditReport) -> None:
    """B > 1: the analytic attacks are single-sample; report the counts for B samples and the bound on the rank."""
    B = report.batch_size
    for lay in report.layers:
        lay.unknowns *= B
        if lay.forward_constraints is not None:
            lay.forward_constraints *= B
        rows = lay.gradient_constraints + (lay.forward_constraints or 0)
        lay.stacked_rank, lay.rank_exact = min(lay.unknowns, rows), False
        lay.deficiency = lay.unknowns - lay.stacked_rank
        lay.notes.append(f"batch size {B}: counts for {B} inputs; the rank is the bound min(unknowns, rows)")
    report.copa = report.total_deficiency = None
    report.reasons.insert(0, f"batch size {B}: the FC step recovers a mixture of the {B} inputs (rank ≤ {B})")
    report.verdict = "none"
    report.verdict_text = f"{VERDICTS['none']}: the analytic attacks invert one sample; with B = {B}, a mixture"


def render(report: AuditReport) -> str:
    """The report as a readable table (one row per layer), the stride residue classes, the metrics and the verdict."""
    C, H, W = report.input_shape
    activation = report.activation or "the model's default"
    lines = [
        f"fedleak audit: {report.model} for {report.dataset} ({C}×{H}×{W}, activation: {activation}, "
        f"batch size {report.batch_size}), {report.parameters:,d} parameters",
    ]
    if report.probe:
        lines.append(f"systems built for the model's initialisation and a {report.probe}; rank cut-off {RCOND:g}")
    if report.layers:
        lines += ["", *_table(report.layers)]
        lines += _residue_lines(report.layers)
        lines.append("")
        copa = "n/a" if report.copa is None else str(report.copa)
        total = "n/a" if report.total_deficiency is None else str(report.total_deficiency)
        lines.append(f"security metric (hybrid paper's COPA index, 0 = every layer unique, more negative = more "
                     f"private): {copa}")
        lines.append(f"R-GAP rank analysis: total deficiency over the conv layers {total}")
    lines.append(f"verdict: {report.verdict_text}")
    lines += [f"  - {reason}" for reason in report.reasons]
    return "\n".join(lines)


def _residue_lines(layers: list[LayerAudit]) -> list[str]:
    """The stride-aware rank condition: per residue class rows, rank and pixels, and the stride-hidden flag."""
    strided = [lay for lay in layers if lay.stride and lay.stride > 1]
    if not strided:
        return []
    lines = ["", "gradient constraints per stride residue class (h mod s, w mod s), per input channel "
                 "(rank/pixels, rows; ✗ = under-determined on its own):"]
    for lay in strided:
        cells = [f"{c.residue[0]},{c.residue[1]}: {c.rank}/{c.pixels}, {c.rows} rows{'' if c.full else ' ✗'}"
                 for c in lay.residue_classes]
        pooled = "holds" if lay.pooled_condition else "fails"
        flag = "  ← STRIDE-HIDDEN: the pooled count holds" if lay.stride_hidden_deficiency else ""
        lines.append(f"  {lay.layer:10s} stride {lay.stride}, filters·k² ≥ H·W {pooled}:  " + "   ".join(cells) + flag)
    return lines


def _table(layers: list[LayerAudit]) -> list[str]:
    header = ("layer", "input", "k/s/p", "filters", "activation", "unknowns", "grad rows", "fwd rows",
              "grad rank", "stacked rank", "deficiency", "gradient only")
    rows = [header]
    for lay in layers:
        geometry = "-" if lay.kernel is None else f"{lay.kernel}/{lay.stride}/{lay.padding}"
        bound = "" if lay.rank_exact else " (bound)"
        rows.append((
            lay.layer, "×".join(map(str, lay.input_shape)), geometry, str(lay.filters), lay.activation,
            str(lay.unknowns), str(lay.gradient_constraints), _opt(lay.forward_constraints), _opt(lay.gradient_rank),
            _opt(lay.stacked_rank) + bound, ("≥ " if not lay.rank_exact else "") + _opt(lay.deficiency),
            "full" if lay.gradient_full else "deficient",
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _opt(value: int | None) -> str:
    return "-" if value is None else str(value)
