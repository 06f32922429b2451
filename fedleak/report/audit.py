"""audit.csv: the one-run DP audit's rows (one per audited client, fedleak/server/canary_audit.py) and each arm's
worst client for the frontier."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from fedleak.report.figures import new_figure, save_figure

AUDIT_FILE = "audit.csv"
#: Column order of audit.csv.
AUDIT_COLUMNS = ["round", "client", "status", "reason", "defense", "kind", "canaries", "included", "guesses",
                 "correct", "confidence", "delta", "epsilon_lower", "claimed_epsilon", "dp_unit", "guarantee",
                 "seconds", "paper"]


def read_audit(path: Path) -> list[dict[str, str]]:
    """The rows of audit.csv (an absent file: none)."""
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def arm_audit(rows: list[dict[str, str]]) -> float | None:
    """The arm's worst client: the largest empirical lower bound on ε over its audited clients (None: no audit).
    An ``inf`` bound (every guess right with δ = 0) stays infinite."""
    bounds = [float(r["epsilon_lower"]) for r in rows if r.get("status") == "ok" and r.get("epsilon_lower")]
    if not bounds:
        return None
    worst = max(bounds)
    return worst if math.isfinite(worst) else math.inf


def audit_plot(points: list[tuple[str, float, float, bool]], path: Path, title: str) -> Path:
    """The audit's empirical lower bound against the claimed ε, with the diagonal: a point above it means the
    mechanism leaks more than its accountant says. ``points``: (label, claimed ε, lower bound, broken) — ``broken``
    marks a mechanism known to be wrong (drawn as a red cross); an infinite bound is drawn at the top edge."""
    figure = new_figure((5.0, 4.2))
    axes = figure.add_subplot()
    finite = [v for _, c, b, _ in points for v in (c, b) if math.isfinite(v)]
    top = max(finite, default=1.0) * 1.1 or 1.0
    axes.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=0.8, label="lower bound = claimed ε")
    for broken in (False, True):
        chosen = [(label, c, min(b, top)) for label, c, b, off in points if off == broken]
        if not chosen:
            continue
        style = {"marker": "x", "color": "tab:red", "markersize": 9} if broken else {"marker": "o"}
        axes.plot([c for _, c, _ in chosen], [b for _, _, b in chosen], linestyle="none",
                  label="noise switched off, ε still reported" if broken else "as implemented", **style)
        for label, c, b in chosen:
            if label:
                axes.annotate(label, (c, b), textcoords="offset points", xytext=(5, 4), fontsize=8)
    axes.set_xlabel("claimed ε (the accountant's)")
    axes.set_ylabel("audit's ε lower bound (95 %)")
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=8)
    axes.grid(True, alpha=0.3)
    return save_figure(figure, path)
