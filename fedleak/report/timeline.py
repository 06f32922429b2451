"""Leakage and accuracy on one time axis: does the model leak less (or more) as it learns?

Two stacked panels share the round axis: the global model's held-out accuracy per round (rounds.csv) above, and below
it, per client, the worst case over the attacks on that client's update in each round (leakage.csv): the median over
all the update's images of the highest PSNR any attack reached (:mod:`fedleak.metrics.headline`: an image no attack
reconstructed counts as not recovered, drawn at 0 dB when it is the median). A filled marker marks leakage (above the
update's mean-image baseline, or an image re-identified), a hollow one none. Each client is its own line: nothing is
pooled across clients that trained or defended differently.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fedleak.metrics.headline import median_psnr
from fedleak.report.tables import Row, is_number
from fedleak.report.worst import AGGREGATE, ImageFacts, worst_images

#: Lines drawn at most (the worst clients first); the summary table lists every client.
MAX_LINES = 10
DPI = 110


def client_rounds(leakage: list[Row]) -> dict[int, list[tuple[int, float, bool]]]:
    """Per client: (round, median worst-case PSNR over the update's images, leaked?) where leaked means above the
    update's median baseline, or any of its images re-identified."""
    updates: dict[tuple[int, int], list[ImageFacts]] = defaultdict(list)
    for fact in worst_images(leakage):
        if is_number(fact.round):
            updates[(int(fact.client or 0), int(fact.round))].append(fact)
    series: dict[int, list[tuple[int, float, bool]]] = defaultdict(list)
    for (client, round_), facts in sorted(updates.items()):
        value = median_psnr(f.psnr for f in facts)
        if value is None:
            continue
        baseline = median_psnr(f.baseline for f in facts if f.baseline is not None)
        above = value > -math.inf and (baseline is None or value > baseline)
        series[client].append((round_, value, above or any(f.reidentified for f in facts)))
    return dict(series)


def timeline_plot(rounds: list[Row], leakage: list[Row], order: list[int], path: Path) -> Path:
    """Accuracy per round (top) and per-client worst-case leakage per round (bottom), one shared round axis.

    ``order`` lists clients worst first; the first :data:`MAX_LINES` of them are drawn.
    """
    figure = Figure(figsize=(7.2, 5.6), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(1, 2))
    accuracy = sorted((int(r["round"]), float(r["accuracy"])) for r in rounds
                      if is_number(r.get("round")) and is_number(r.get("accuracy")))
    if accuracy:
        top.plot(*zip(*accuracy, strict=True), marker="o", color="tab:blue")
        top.set_ylim(0, 1.02)
    else:
        top.text(0.5, 0.5, "no held-out accuracy recorded", ha="center", va="center", transform=top.transAxes)
    top.set_ylabel("global accuracy")
    top.grid(True, alpha=0.3)
    _leakage_panel(bottom, client_rounds(leakage), order, _baseline(leakage))
    bottom.set_xlabel("round")
    all_rounds = sorted({x for x, _ in accuracy} | {int(r["round"]) for r in leakage if is_number(r.get("round"))})
    if all_rounds and len(all_rounds) <= 20:
        bottom.set_xticks(all_rounds)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def _baseline(leakage: list[Row]) -> float | None:
    return median_psnr(f.baseline for f in worst_images(leakage) if f.baseline is not None)


def _leakage_panel(axes, series: dict[int, list[tuple[int, float, bool]]], order: list[int],
                   baseline: float | None) -> None:
    shown = [c for c in order if c in series][:MAX_LINES]
    if not shown:
        axes.text(0.5, 0.5, "no reconstruction to plot", ha="center", va="center", transform=axes.transAxes)
        return
    finite = [v for c in shown for _, v, _ in series[c] if math.isfinite(v)]
    ceiling = (max(finite) if finite else 0.0) + 10.0
    for client in shown:
        points = series[client]
        xs = [x for x, _, _ in points]
        ys = [v if math.isfinite(v) else (ceiling if v > 0 else 0.0) for _, v, _ in points]
        name = "aggregate" if client == AGGREGATE else f"client {client}"
        (line,) = axes.plot(xs, ys, label=name, linewidth=1.2)
        for x, y, (_, _, leaked) in zip(xs, ys, points, strict=True):
            axes.plot([x], [y], marker="o", color=line.get_color(),
                      markerfacecolor=line.get_color() if leaked else "white")
    if any(v == math.inf for c in shown for _, v, _ in series[c]):
        axes.axhline(ceiling, color="grey", linewidth=0.8, linestyle=":")
        axes.annotate("exact (PSNR = ∞)", (0.01, ceiling), xycoords=("axes fraction", "data"), va="bottom",
                      fontsize=8, color="grey")
    if baseline is not None:
        axes.axhline(baseline, color="black", linewidth=0.8, linestyle="--", label="mean-image baseline (median)")
    if any(v == -math.inf for c in shown for _, v, _ in series[c]):
        axes.annotate("median image not recovered (−∞) at 0", (0.01, 0.0), xycoords=("axes fraction", "data"),
                      va="bottom", fontsize=8, color="grey")
    axes.set_ylabel("worst-case PSNR per update (dB)\nfilled: leaks (above baseline or re-identified)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the lines, never over them
