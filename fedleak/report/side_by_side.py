"""``reconstruction.png`` of ``fedleak attack``: the target batch, the reconstruction and the loss curve in one figure.

The three panels share one row so that what was sent, what came back and how the attack got there read together
(the separate ``target.png`` and ``recon.png`` stay for anything that reads them). Images are drawn at least 2 inches
wide with nearest-neighbour scaling, not as 72 px thumbnails. The curve is the matching distance ``D`` between the
dummy's update and the observed one at each kept snapshot of the chosen attempt (log scale); an attack that keeps no
such history (a closed-form or layer-by-layer solver, or ``snapshot_every=0``) gets a panel saying so instead.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def loss_curve(diagnostics: dict[str, Any]) -> tuple[list[int], list[float]]:
    """(iterations, distances) with a finite, positive distance (drawable on a log axis) from the diagnostics."""
    iterations = list(diagnostics.get("history_iterations") or [])
    losses = list(diagnostics.get("history_losses") or [])
    pairs = [(int(i), float(d)) for i, d in zip(iterations, losses, strict=False)
             if isinstance(d, int | float) and math.isfinite(d) and d > 0]
    return [i for i, _ in pairs], [d for _, d in pairs]


def write_side_by_side(path: Path, target: np.ndarray, recon: np.ndarray, diagnostics: dict[str, Any],
                       title: str) -> Path:
    """Draw target | reconstruction | loss curve into ``path`` (uint8 H×W×3 mosaics from :func:`grid`)."""
    figure = Figure(figsize=(10.5, 3.4), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    left, middle, right = figure.subplots(1, 3, width_ratios=[1, 1, 1.25])
    for axes, pixels, name in ((left, target, "target (the client's batch)"), (middle, recon, "reconstruction")):
        axes.imshow(pixels, interpolation="nearest")
        axes.set_title(name, fontsize=9)
        axes.set_axis_off()
    iterations, losses = loss_curve(diagnostics)
    if len(losses) >= 2:
        right.semilogy(iterations, losses, marker=".", linewidth=1)
        right.set_xlabel("optimiser iteration", fontsize=8)
        right.set_ylabel("matching distance D", fontsize=8)
        right.tick_params(labelsize=7)
        right.grid(alpha=0.3)
        right.set_title("loss curve (kept snapshots)", fontsize=9)
    else:
        right.set_axis_off()
        right.text(0.5, 0.5, "no loss curve:\nthis attack kept no\noptimisation history", ha="center",
                   va="center", fontsize=9, transform=right.transAxes)
    figure.suptitle(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path
