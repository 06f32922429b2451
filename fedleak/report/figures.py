"""Figures of a run, drawn with matplotlib's Agg canvas (no display, no global pyplot state).

- leakage vs round: median PSNR over clients per round, one line per attack;
- leakage vs batch size: median PSNR per batch size, one line per attack;
- training: global accuracy and loss per round from rounds.csv.

A figure with nothing to plot says so in the image instead of being silently left out.
"""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fedleak.report.tables import Row, by_defense, is_number, series

FIGURE_SIZE = (6.4, 3.8)
DPI = 110


def _new_figure() -> Figure:
    figure = Figure(figsize=FIGURE_SIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def _empty(axes, message: str) -> None:
    axes.text(0.5, 0.5, message, ha="center", va="center", transform=axes.transAxes, wrap=True)
    axes.set_xticks([])
    axes.set_yticks([])


def _finite_ceiling(points: dict[str, list[tuple[float, float]]]) -> float | None:
    """Where to draw infinite PSNR (exact reconstructions): just above the largest finite value."""
    if not any(math.isinf(y) for pts in points.values() for _, y in pts):
        return None
    finite = [y for pts in points.values() for _, y in pts if math.isfinite(y)]
    return (max(finite) if finite else 0.0) + 10.0


def leakage_plot(rows: list[Row], x: str, xlabel: str, path: Path, success_psnr: float | None = None) -> Path:
    """Median per-image PSNR of successful reconstructions vs ``x`` (a leakage.csv column), one line per attack."""
    figure = _new_figure()
    axes = figure.add_subplot()
    points = {attack: pts for attack, pts in series(rows, x).items() if pts}
    if not points:
        _empty(axes, "no successful reconstruction to plot\n(every attack failed or nothing was attacked yet)")
        return _save(figure, path)
    ceiling = _finite_ceiling(points)
    for attack, pts in points.items():
        xs = [p[0] for p in pts]
        ys = [ceiling if (ceiling is not None and math.isinf(p[1])) else p[1] for p in pts]
        axes.plot(xs, ys, marker="o", label=attack)
    if ceiling is not None:
        axes.axhline(ceiling, color="grey", linewidth=0.8, linestyle=":")
        axes.annotate("exact (PSNR = ∞)", (0.01, ceiling), xycoords=("axes fraction", "data"), va="bottom",
                      fontsize=8, color="grey")
    if success_psnr is not None:
        axes.axhline(success_psnr, color="tab:red", linewidth=0.8, linestyle="--",
                     label=f"success ≥ {success_psnr:g} dB")
    if x == "batch_size":
        axes.set_xscale("log", base=2)
    xs_all = sorted({p[0] for pts in points.values() for p in pts})
    if all(float(v).is_integer() for v in xs_all) and len(xs_all) <= 16:
        axes.set_xticks(xs_all, [f"{int(v)}" for v in xs_all])
    axes.set_xlabel(xlabel)
    axes.set_ylabel("median PSNR per image (dB, peak 1)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    return _save(figure, path)


def defense_plot(rows: list[Row], path: Path, success_psnr: float | None = None) -> Path:
    """Median per-image PSNR per defense (one bar per attack), for runs whose clients defend differently."""
    medians = by_defense(rows)
    figure = Figure(figsize=(FIGURE_SIZE[0], max(FIGURE_SIZE[1], 0.45 * len(medians) + 1.2)), dpi=DPI,
                    layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    attacks = sorted({a for by_attack in medians.values() for a in by_attack})
    if not attacks:
        _empty(axes, "no successful reconstruction to plot")
        return _save(figure, path)
    points = {a: [(0.0, by_attack[a]) for by_attack in medians.values() if a in by_attack] for a in attacks}
    ceiling = _finite_ceiling(points)
    height = 0.8 / len(attacks)
    for i, attack in enumerate(attacks):
        ys = [j + i * height for j, by_attack in enumerate(medians.values()) if attack in by_attack]
        values = [by_attack[attack] for by_attack in medians.values() if attack in by_attack]
        widths = [ceiling if (ceiling is not None and math.isinf(v)) else v for v in values]
        axes.barh(ys, widths, height=height, label=attack)
    axes.set_yticks([j + 0.4 - height / 2 for j in range(len(medians))], list(medians), fontsize=7)
    axes.invert_yaxis()
    if success_psnr is not None:
        axes.axvline(success_psnr, color="tab:red", linewidth=0.8, linestyle="--",
                     label=f"success ≥ {success_psnr:g} dB")
    axes.set_xlabel("median PSNR per image (dB, peak 1)" + ("; ∞ drawn at the right edge" if ceiling else ""))
    axes.grid(True, axis="x", alpha=0.3)
    axes.legend(fontsize=8)
    return _save(figure, path)


def training_plot(rows: list[Row], path: Path) -> Path:
    """Global accuracy (left axis) and losses (right axis) per round.

    ``loss`` is the global model's evaluation loss; ``train_loss`` (when recorded) the clients' mean training loss.
    """
    figure = _new_figure()
    axes = figure.add_subplot()
    rounds = [r for r in rows if is_number(r.get("round"))]

    def points(key: str) -> list[tuple[float, float]]:
        return [(r["round"], r[key]) for r in rounds if is_number(r.get(key))]

    accuracy = points("accuracy")
    losses = [(label, pts) for label, pts in (("evaluation loss", points("loss")), ("training loss",
              points("train_loss"))) if pts]
    if not accuracy and not losses:
        _empty(axes, "no training rounds recorded (rounds.csv is missing or has no accuracy/loss)")
        return _save(figure, path)
    axes.set_xlabel("round")
    handles = []
    if accuracy:
        handles += axes.plot(*zip(*accuracy, strict=True), marker="o", color="tab:blue", label="accuracy")
        axes.set_ylabel("accuracy")
        axes.set_ylim(0, 1.02)
    if losses:
        loss_axes = axes.twinx() if accuracy else axes
        for (label, pts), (color, marker) in zip(losses, (("tab:orange", "s"), ("tab:green", "^")), strict=False):
            handles += loss_axes.plot(*zip(*pts, strict=True), marker=marker, color=color, label=label)
        loss_axes.set_ylabel("loss")
        values = [y for _, pts in losses for _, y in pts]
        if min(values) > 0 and max(values) / min(values) > 100:  # diverging runs span decades: keep both ends visible
            loss_axes.set_yscale("log")
            loss_axes.set_ylabel("loss (log scale)")
    all_rounds = sorted({r["round"] for r in rounds})
    if len(all_rounds) <= 20:
        axes.set_xticks(all_rounds)
    axes.grid(True, alpha=0.3)
    axes.legend(handles=handles, fontsize=8, loc="best")
    return _save(figure, path)


def history_plot(snapshots: list, path: Path, note: str = "") -> Path:
    """Reconstruction snapshots during optimisation: one column per snapshot, one row per image.

    ``snapshots`` is Reconstruction.history (each B×C×H×W). With none, the image says so.
    """
    from fedleak.report.images import to_hwc

    if not snapshots:
        figure = _new_figure()
        _empty(figure.add_subplot(), note or "this attack records no optimisation history")
        return _save(figure, path)
    arrays = [to_hwc(s) for s in snapshots]
    batch = max(len(a) for a in arrays)
    shown = _spread(len(arrays), 10)
    figure = Figure(figsize=(1.2 * len(shown) + 0.4, 1.3 * batch + 0.4), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.subplots(batch, len(shown), squeeze=False)
    for col, index in enumerate(shown):
        for row in range(batch):
            axes = grid[row][col]
            axes.set_axis_off()
            if row < len(arrays[index]):
                axes.imshow(arrays[index][row], interpolation="nearest", vmin=0, vmax=1)
            if row == 0:
                axes.set_title(f"{index + 1}/{len(arrays)}", fontsize=8)
    if note:
        figure.suptitle(note, fontsize=9)
    return _save(figure, path)


def _spread(count: int, limit: int) -> list[int]:
    """At most ``limit`` indices spread evenly over range(count), first and last included."""
    if count <= limit:
        return list(range(count))
    return sorted({round(i * (count - 1) / (limit - 1)) for i in range(limit)})
