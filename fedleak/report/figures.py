"""Figures of a run, drawn with matplotlib's Agg canvas (no display, no global pyplot state).

- leakage per client: one bar per attack, the client's baseline beside them (nothing pooled across clients);
- leakage vs batch size: one line per (attack, defense, training): clients pooled only when they did the same;
- training: global accuracy and loss per round from rounds.csv.
(``fedleak.report.timeline`` draws leakage and accuracy on one time axis.)

A figure with nothing to plot says so in the image instead of being silently left out.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fedleak.metrics.headline import median_psnr
from fedleak.report.tables import Row, baseline_psnrs, image_psnrs, is_number
from fedleak.report.worst import AGGREGATE, ClientLeakage, training_label

FIGURE_SIZE = (6.4, 3.8)
DPI = 110
#: Per-client figures show the worst clients only; the summary table links the full list.
MAX_CLIENTS = 20


def new_figure(size: tuple[float, float] = FIGURE_SIZE) -> Figure:
    """A figure drawn without pyplot's global state (reports are built in worker threads too)."""
    figure = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def _empty(axes, message: str) -> None:
    axes.text(0.5, 0.5, message, ha="center", va="center", transform=axes.transAxes, wrap=True)
    axes.set_xticks([])
    axes.set_yticks([])


def _finite_ceiling(points: dict[str, list[tuple[float, float]]]) -> float | None:
    """Where to draw infinite PSNR (exact reconstructions): just above the largest finite value."""
    if not any(y == math.inf for pts in points.values() for _, y in pts):
        return None
    finite = [y for pts in points.values() for _, y in pts if math.isfinite(y)]
    return (max(finite) if finite else 0.0) + 10.0


def _label(client: ClientLeakage) -> str:
    """'client 3 · B 4 · 5 local steps · prune(ratio=0.5)': what the client did, so bars are never read as alike."""
    name = "aggregate" if client.client == AGGREGATE else f"client {client.client}"
    batch = "/".join(str(b) for b in client.batch_sizes) or "?"
    return f"{name} · B {batch} · {client.training} · {', '.join(client.defenses)}"


def client_attack_plot(rows: list[Row], clients: list[ClientLeakage], path: Path) -> Path:
    """Per client (worst first, at most :data:`MAX_CLIENTS`), one bar per attack: the median PSNR over every image
    that attack attacked on the client (fedleak.metrics.headline: not recovered counts as −∞, drawn as no bar), and
    the client's mean-image baseline as a black tick. Nothing is pooled across clients."""
    shown = clients[:MAX_CLIENTS]
    attacks = sorted({a for c in shown for a in c.attacks})
    psnrs: dict[tuple[int, str], list[float | None]] = defaultdict(list)
    for row in rows:
        psnrs[(int(row.get("client") or 0), str(row.get("attack")))].extend(image_psnrs(row))
    figure = Figure(figsize=(FIGURE_SIZE[0] + 1.6, max(2.6, 0.32 * len(shown) * max(1, len(attacks)) + 1.2)),
                    dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    values = {key: median_psnr(v) for key, v in psnrs.items() if v and key[0] in {c.client for c in shown}}
    if not values:
        _empty(axes, "no successful reconstruction to plot")
        return save_figure(figure, path)
    ceiling = _finite_ceiling({"all": [(0.0, v) for v in values.values()]})
    height = 0.8 / len(attacks)
    for i, attack in enumerate(attacks):
        ys = [j + i * height for j, c in enumerate(shown) if (c.client, attack) in values]
        widths = [values[(c.client, attack)] for c in shown if (c.client, attack) in values]
        widths = [w if math.isfinite(w) else (ceiling if w > 0 else 0.0) for w in widths]
        axes.barh(ys, widths, height=height, label=attack)
    for j, client in enumerate(shown):
        if client.baseline is not None:
            axes.plot([client.baseline] * 2, [j - height / 2, j + 0.8 - height / 2], color="black", linewidth=1.5,
                      label="mean-image baseline" if j == 0 else None)
    axes.set_yticks([j + 0.4 - height / 2 for j in range(len(shown))], [_label(c) for c in shown], fontsize=7)
    axes.invert_yaxis()
    axes.set_xlabel("median PSNR per image (dB, peak 1)" + ("; ∞ drawn at the right edge" if ceiling else ""))
    axes.grid(True, axis="x", alpha=0.3)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the bars, never over them
    return save_figure(figure, path)


def batch_size_plot(rows: list[Row], path: Path) -> Path | None:
    """Median PSNR over every attacked image against batch size (fedleak.metrics.headline: not recovered counts as
    −∞, drawn at 0), one line per (attack, defense, training) — clients pooled only when they trained and defended
    alike. ``None`` when no such group spans two batch sizes (nothing to compare)."""
    groups: dict[str, dict[int, list[float | None]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if is_number(row.get("batch_size")):
            key = f"{row.get('attack')} · {row.get('defense') or 'none'} · {training_label([row])}"
            groups[key][int(row["batch_size"])].extend(image_psnrs(row))
    points = {k: [(float(b), median_psnr(v)) for b, v in sorted(by_b.items()) if v] for k, by_b in groups.items()}
    # A line needs two batch sizes, and something recovered somewhere (all-failed groups have nothing to compare).
    points = {k: pts for k, pts in sorted(points.items()) if len(pts) >= 2 and any(y > -math.inf for _, y in pts)}
    if not points:
        return None
    figure = new_figure()
    axes = figure.add_subplot()
    ceiling = _finite_ceiling(points)
    for key, pts in points.items():
        ys = [y if math.isfinite(y) else (ceiling if y > 0 else 0.0) for _, y in pts]
        axes.plot([x for x, _ in pts], ys, marker="o", label=key)
    baseline = median_psnr(v for row in rows if row.get("status") == "ok" for v in baseline_psnrs(row))
    if baseline is not None:
        axes.axhline(baseline, color="black", linewidth=0.8, linestyle="--", label="mean-image baseline (median)")
    axes.set_xscale("log", base=2)
    sizes = sorted({x for pts in points.values() for x, _ in pts})
    axes.set_xticks(sizes, [f"{int(v)}" for v in sizes])
    axes.set_xlabel("client batch size")
    axes.set_ylim(bottom=0)  # a zoomed axis would make a 0.4 dB step look like a cliff
    axes.set_ylabel("median PSNR per image (dB)" + ("; ∞ at top" if ceiling else ""))
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7)
    return save_figure(figure, path)


def training_plot(rows: list[Row], path: Path) -> Path:
    """Global accuracy (left axis) and losses (right axis) per round.

    ``loss`` is the global model's evaluation loss; ``train_loss`` (when recorded) the clients' mean training loss.
    """
    figure = new_figure()
    axes = figure.add_subplot()
    rounds = [r for r in rows if is_number(r.get("round"))]

    def points(key: str) -> list[tuple[float, float]]:
        return [(r["round"], r[key]) for r in rounds if is_number(r.get(key))]

    accuracy = points("accuracy")
    losses = [(label, pts) for label, pts in (("evaluation loss", points("loss")), ("training loss",
              points("train_loss"))) if pts]
    if not accuracy and not losses:
        _empty(axes, "no training rounds recorded (rounds.csv is missing or has no accuracy/loss)")
        return save_figure(figure, path)
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
    return save_figure(figure, path)
