"""The top-level page of a run with arms: the frontier figure, the frontier table, each arm's curves.

Self-contained like every report.html (figures inlined); each arm's own report is linked, not copied.
"""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.ticker import MaxNLocator

from fedleak.defaults import DEFAULT_SUCCESS_PSNR
from fedleak.fence import check_tree
from fedleak.report.audit import audit_plot
from fedleak.report.build import build_report
from fedleak.report.figures import new_figure, save_figure
from fedleak.report.frontier import (
    ARMS_DIR,
    FRONTIER_FILE,
    ArmResult,
    arm_names,
    missing_arms,
    read_arm,
    write_frontier,
)
from fedleak.report.html import STYLE, esc, fmt, inline_png
from fedleak.report.sections import DP_UNITS
from fedleak.report.tidy import write_arms_images_table

FRONTIER_PNG = "frontier.png"
FIGURES_DIR = "figures"
REPORT_FILE = "report.html"
#: Label positions (points from the marker) taken in turn by the arms.
LABEL_OFFSETS = [(6, 4), (6, -4), (-6, 4), (-6, -4)]


def epsilon_label(arm: ArmResult) -> str:
    if arm.dp_epsilon is None:
        return ""
    return f"ε = {fmt(arm.dp_epsilon, 2)}" + (f" per {arm.dp_unit}" if arm.dp_unit else "")


def frontier_plot(arms: list[ArmResult], path: Path) -> Path:
    """Left: final accuracy against worst-case median PSNR, one labelled point per arm (ε beside DP arms).
    Right: each DP arm's measured re-identification rate against its ReRo bound."""
    figure = new_figure((11.5, 4.2))
    _frontier_axes(figure.add_subplot(1, 2, 1), arms)
    _bound_axes(figure.add_subplot(1, 2, 2), arms)
    return save_figure(figure, path)


def _bound_axes(axes, arms: list[ArmResult]) -> None:
    """Measured re-identification rate (worst client, strongest attack) against the ReRo bound, with the diagonal:
    a point above it is an implementation error."""
    drawn = [a for a in arms if a.rero_bound is not None and a.reidentified_rate is not None]
    axes.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle="--", label="measured = bound")
    for arm in drawn:
        colour = "tab:red" if arm.rero_violated else "tab:blue"
        axes.plot([arm.rero_bound], [arm.reidentified_rate], marker="o", linestyle="none", color=colour)
        axes.annotate(arm.arm + (" (above its bound)" if arm.rero_violated else ""),
                      (arm.rero_bound, arm.reidentified_rate), textcoords="offset points", xytext=(5, 4), fontsize=8)
    if not drawn:
        axes.text(0.5, 0.5, "no DP arm with a measured re-identification rate", ha="center", va="center",
                  transform=axes.transAxes)
    axes.set_xlim(0, 1.02)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("ReRo bound (prior: uniform over the re-identification gallery)")
    axes.set_ylabel("re-identified share, strongest attack, worst client")
    axes.set_title("measured against bound (DP arms)", fontsize=9)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, loc="upper left")


def _frontier_axes(axes, arms: list[ArmResult]) -> None:
    drawn = [a for a in arms if a.final_accuracy is not None and a.worst_median_psnr is not None]
    if not drawn:
        axes.text(0.5, 0.5, "no arm has both an accuracy and a reconstruction yet", ha="center", va="center",
                  transform=axes.transAxes)
        return
    finite = [a.worst_median_psnr for a in drawn if math.isfinite(a.worst_median_psnr)]
    ceiling = (max(finite) if finite else 0.0) + 10.0  # where an exact reconstruction (∞ dB) is drawn
    for i, arm in enumerate(drawn):
        x = _drawn_at(arm.worst_median_psnr, ceiling)
        axes.plot([x], [arm.final_accuracy], marker="o", linestyle="none")
        label = arm.arm + (f"\n{epsilon_label(arm)}" if arm.dp_epsilon is not None else "")
        # Arms often land close together (e.g. two defenses that cost nothing): alternate where labels go.
        dx, dy = LABEL_OFFSETS[i % len(LABEL_OFFSETS)]
        axes.annotate(label, (x, arm.final_accuracy), textcoords="offset points", xytext=(dx, dy), fontsize=8,
                      ha="left" if dx > 0 else "right", va="bottom" if dy > 0 else "top")
    threshold = drawn[0].success_psnr
    # Fixed axes from zero, so a small difference between arms does not look like a large one.
    axes.set_ylim(0, 1.05)
    exact = any(a.worst_median_psnr == math.inf for a in drawn)
    axes.set_xlim(0, max(max(finite, default=0.0), ceiling if exact else 0.0, threshold) + 8)
    axes.axvline(threshold, color="tab:red", linewidth=0.8, linestyle="--", label=f"success ≥ {threshold:g} dB")
    left_out = [a.arm for a in arms if a not in drawn]
    axes.set_xlabel("worst-case median PSNR per attacked image (dB, peak 1)" + _infinity_note([a.worst_median_psnr
                                                                                               for a in drawn]))
    axes.set_ylabel("final held-out accuracy")
    axes.set_title("privacy–utility frontier" + (f" (not drawn: {', '.join(left_out)})" if left_out else ""),
                   fontsize=9)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, loc="best")


def _drawn_at(value: float, ceiling: float) -> float:
    """Where a PSNR is drawn: ∞ (every image exact) at ``ceiling``, −∞ (median image not recovered) at 0 dB."""
    if math.isfinite(value):
        return value
    return ceiling if value > 0 else 0.0


def _infinity_note(values: list[float]) -> str:
    """The axis label's note on where infinite PSNRs are drawn (empty when there are none)."""
    notes = (["∞ (exact) drawn at the far end"] if any(v == math.inf for v in values) else []) + (
        ["−∞ (median image not recovered) at 0"] if any(v == -math.inf for v in values) else [])
    return "; " + ", ".join(notes) if notes else ""


def curves_plot(arms: list[ArmResult], key: str, ylabel: str, path: Path) -> Path:
    """One line per arm of ``accuracy_per_round`` or ``leakage_per_round``."""
    figure = new_figure((6.4, 3.8))
    axes = figure.add_subplot()
    series = [(a.arm, getattr(a, key)) for a in arms if getattr(a, key)]
    if not series:
        axes.text(0.5, 0.5, "nothing recorded yet", ha="center", va="center", transform=axes.transAxes)
        return save_figure(figure, path)
    finite = [y for _, pts in series for _, y in pts if math.isfinite(y)]
    ceiling = (max(finite) if finite else 0.0) + 10.0
    for name, points in series:
        axes.plot([x for x, _ in points], [_drawn_at(y, ceiling) for _, y in points], marker="o", label=name)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("round")
    axes.set_ylabel(ylabel + _infinity_note([y for _, pts in series for _, y in pts]))
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    return save_figure(figure, path)


def _table(arms: list[ArmResult]) -> str:
    head = ["arm", "defense", "final accuracy", "worst-case median PSNR (dB)", "success rate", "ε", "ε unit",
            "membership AUC (worst client)", "TPR at 1 % FPR (worst client)", "re-identified (worst client)",
            "ReRo bound", "ε lower bound, audit (worst client)", "attacked images", "skipped attacks", "arm report"]
    rows = []
    for a in arms:
        rate = None if a.success_rate is None else 100 * a.success_rate
        link = f"{ARMS_DIR}/{a.arm}/{REPORT_FILE}"
        cells = [esc(a.arm), esc(a.defense), fmt(a.final_accuracy, 3), fmt(a.worst_median_psnr, 1),
                 fmt(rate, 0, " %"), fmt(a.dp_epsilon, 2), esc(a.dp_unit or "–"), fmt(a.membership_auc, 3),
                 fmt(None if a.membership_tpr_at_1pct_fpr is None else 100 * a.membership_tpr_at_1pct_fpr, 1, " %"),
                 fmt(None if a.reidentified_rate is None else 100 * a.reidentified_rate, 0, " %"),
                 fmt(a.rero_bound, 3) + (" — exceeded" if a.rero_violated else ""), fmt(a.audit_epsilon_lower, 2),
                 esc(a.attacked_images),
                 esc(a.skipped_attacks),
                 f'<a href="{esc(link)}">{esc(link)}</a>']
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{esc(h)}</th>" for h in head)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _figure_html(path: Path, caption: str) -> str:
    return (f'<figure><img src="{inline_png(path)}" alt="{esc(caption)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def _notes(arms: list[ArmResult], missing: list[str]) -> list[str]:
    threshold = arms[0].success_psnr if arms else DEFAULT_SUCCESS_PSNR
    notes = [
        "Every arm is the same federation (seed, data, model, attack schedule); only what each client does to "
        "its update differs.",
        "Worst case per attacked image: the highest PSNR any attack reached on that image of that update. The "
        "median is over all attacked images: an image no attack reconstructed counts as not recovered (−∞), an even "
        "count takes the worse middle image, and ∞ means every image was exact. The success rate is the share of all "
        f"attacked images at or above {threshold:g} dB (images no attack recovered count as misses).",
        "Final accuracy: the global model on the held-out images after the last round (rounds.csv).",
        "Re-identified: per client, the share of its attacked images the strongest attack re-identified (nearest "
        "gallery image by SSIM is the true one); the worst client is shown. ReRo bound: the most any attack could "
        "re-identify under the arm's DP mechanism, from its trade-off curve at the prior of a uniform guess over the "
        "gallery (Balle, Cherubin & Hayes, S&P 2022; Hayes, Mahloujifar & Balle, NeurIPS 2023, arXiv 2302.07225). "
        "A rate above its bound beyond chance (95 % Clopper–Pearson) is an implementation error.",
    ]
    for unit in sorted({a.dp_unit for a in arms if a.dp_epsilon is not None}):
        notes.append(f"ε per {unit or '(unit not recorded)'}: the largest cumulative ε of the arm's clients at the "
                     "end; " + DP_UNITS.get(unit, "the rows do not say whether it is per record or per update")
                     + ".")
    notes += [f"Arm {a.arm!r} is incomplete: {a.rounds_recorded} of {a.rounds_planned} rounds recorded, so its "
              "final accuracy is not the last round's." for a in arms
              if a.rounds_planned is not None and a.rounds_recorded < a.rounds_planned]
    notes += [f"Arm {name!r} has no run directory: the run stopped before it." for name in missing]
    return notes


def write_page(run_dir: Path, arms: list[ArmResult], missing: list[str]) -> Path:
    """frontier.png, the per-round figures and report.html at the top of ``run_dir``."""
    frontier = frontier_plot(arms, run_dir / FRONTIER_PNG)
    accuracy = curves_plot(arms, "accuracy_per_round", "held-out accuracy",
                           run_dir / FIGURES_DIR / "accuracy_per_round.png")
    leakage = curves_plot(arms, "leakage_per_round", "worst-case median PSNR (dB)",
                          run_dir / FIGURES_DIR / "leakage_per_round.png")
    title = f"fedleak defense comparison — {run_dir.name}"
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>", f"<h1>{esc(title)}</h1>",
        _figure_html(frontier, "Final accuracy against worst-case leakage, one point per arm."),
        f"<h2>Frontier (<code>{FRONTIER_FILE}</code>)</h2>", _table(arms),
        '<ul class="note">' + "".join(f"<li>{esc(n)}</li>" for n in _notes(arms, missing)) + "</ul>",
        "<h2>Per round</h2>",
        _figure_html(accuracy, "Held-out accuracy of each arm's global model per round."),
        _figure_html(leakage, "Worst-case median PSNR per round: per attacked image the best attack, median "
                              "over the round's images."),
        *_audit_html(run_dir, arms),
        "</body></html>",
    ]
    path = run_dir / REPORT_FILE
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _audit_html(run_dir: Path, arms: list[ArmResult]) -> list[str]:
    """The one-run audit's figure (worst client's lower bound against the claimed ε per arm), when arms were
    audited."""
    # An arm that claims no ε has no point to compare; its bound stays in frontier.csv.
    points = [(a.arm, a.dp_epsilon, a.audit_epsilon_lower, False) for a in arms
              if a.audit_epsilon_lower is not None and a.dp_epsilon is not None]
    if not points:
        return []
    figure = audit_plot(points, run_dir / FIGURES_DIR / "audit.png",
                        "one-run DP audit (Steinke, Nasr & Jagielski 2023): worst client per arm")
    return ["<h2>One-run DP audit (<code>arms/*/audit.csv</code>)</h2>",
            _figure_html(figure, "Per arm, the worst client's empirical lower bound on ε at 95 % from its canaries "
                                 "against the ε its accountant claims (arms that claim none are left out); a point "
                                 "above the diagonal is a mechanism leaking more than it claims.")]


def build_frontier(run_dir: Path, rebuild_arms: bool = False) -> Path:
    """Write frontier.csv, frontier.png, figures/ and report.html at the top of a run with arms.

    ``rebuild_arms`` first rebuilds each arm's own report (``fedleak report`` on the top folder).
    """
    run_dir = Path(run_dir)
    check_tree(run_dir)  # the arms' folders included: nothing below may lead out of the run folder
    names = arm_names(run_dir)
    if rebuild_arms:
        for name in names:
            build_report(run_dir / ARMS_DIR / name)
    arms = [read_arm(run_dir / ARMS_DIR / name) for name in names]
    write_frontier(run_dir / FRONTIER_FILE, arms)
    write_arms_images_table(run_dir, [run_dir / ARMS_DIR / name for name in names])
    return write_page(run_dir, arms, missing_arms(run_dir))
