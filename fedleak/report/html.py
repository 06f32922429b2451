"""report.html: one self-contained page (figures and grids inlined as base64 PNG, no external assets).

Everything taken from files is escaped; the page is readable without the run directory beside it.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedleak.report.tables import AttackClientSummary

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.6rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.55rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.note { color: #555; font-size: 0.9rem; } .warn { color: #a00; }
figure { display: inline-block; margin: 0.5rem 1rem 0.5rem 0; vertical-align: top; }
figcaption { font-size: 0.85rem; color: #444; } img.grid { image-rendering: pixelated; border: 1px solid #ddd; }
code { background: #f3f3f3; padding: 0 0.2rem; }
"""


@dataclass
class GridImage:
    """One true-vs-reconstructed grid with its caption."""

    path: Path
    caption: str
    group: str


@dataclass
class ReportContent:
    """Everything the page shows, gathered by :func:`fedleak.report.build.build_report`."""

    title: str
    run_dir: Path
    scenario_rows: list[tuple[str, str]]
    client_rows: list[dict[str, Any]]
    attack_rows: list[dict[str, Any]]
    summaries: list[AttackClientSummary]
    figures: list[tuple[Path, str]]
    grids: list[GridImage]
    notes: list[str] = field(default_factory=list)
    metric_notes: list[str] = field(default_factory=list)
    grids_left_out: int = 0


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def inline_png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def fmt(value: float | None, digits: int = 2, unit: str = "") -> str:
    if value is None:
        return "–"
    if value == float("inf"):
        return "∞"
    return f"{value:.{digits}f}{unit}"


def _table(header: Iterable[str], rows: Iterable[Iterable[tuple[str, bool]]]) -> str:
    """HTML table; each cell is (already escaped html, is_numeric)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if num else f"<td>{c}</td>" for c, num in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _join(values: list[Any]) -> str:
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values) or "–"


def _summary_table(summaries: list[AttackClientSummary]) -> str:
    if not summaries:
        return '<p class="warn">No leakage rows yet: no attack result was recorded (see the notes above).</p>'
    header = ["attack", "client", "batch size", "local steps", "lr", "defense", "DP-SGD ε", "attempts", "ok",
              "median PSNR per image (dB)",
              "mean PSNR of batches (dB)", "mean SSIM", "label accuracy", "success rate", "mean time (s)", "failures"]
    rows = []
    for s in summaries:
        reasons = "<br>".join(f"{n}× {esc(reason)}" for reason, n in s.failure_reasons.most_common())
        rows.append([
            # Client -1 is the aggregate a server sees under secure aggregation.
            (esc(s.attack), False), (esc("aggregate" if s.client == -1 else s.client), True),
            (esc(_join(s.batch_sizes)), True),
            (esc(_join(s.local_steps)), True), (esc(_join(s.lrs)), True), (esc(_join(s.defenses)), False),
            (fmt(s.max_dp_epsilon, 2), True), (esc(s.attempts), True), (esc(s.ok), True),
            (fmt(s.median_psnr), True), (fmt(s.mean_psnr), True), (fmt(s.mean_ssim, 3), True),
            (fmt(None if s.mean_label_accuracy is None else 100 * s.mean_label_accuracy, 0, " %"), True),
            (fmt(None if s.success_rate is None else 100 * s.success_rate, 0, " %"), True),
            (fmt(s.mean_seconds, 1), True), (reasons or "none", False),
        ])
    return _table(header, rows)


def render(content: ReportContent) -> str:
    """The whole page as one HTML string."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(content.title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{esc(content.title)}</h1>",
        f'<p class="note">Run directory: <code>{esc(content.run_dir)}</code>. An honest-but-curious server '
        "aggregated every client update unchanged and ran gradient-leakage attacks on a copy; each "
        "reconstruction was scored against the client's true batch, which the attacks never saw.</p>",
    ]
    parts += [f'<p class="warn">{esc(note)}</p>' for note in content.notes]

    parts.append("<h2>Scenario</h2>")
    parts.append(_table(["setting", "value"], [[(esc(k), False), (esc(v), False)] for k, v in content.scenario_rows]))
    if content.client_rows:
        keys = list(content.client_rows[0])
        parts.append("<h3>Clients</h3>")
        parts.append(_table(keys, [[(esc(row[k]), True) for k in keys] for row in content.client_rows]))
    if content.attack_rows:
        keys = list(content.attack_rows[0])
        parts.append("<h3>Attacks</h3>")
        parts.append(_table(keys, [[(esc(row[k]), False) for k in keys] for row in content.attack_rows]))

    parts.append("<h2>Leakage per attack and client</h2>")
    parts.append('<ul class="note">' + "".join(f"<li>{note}</li>" for note in content.metric_notes) + "</ul>")
    parts.append(_summary_table(content.summaries))

    parts.append("<h2>Figures</h2>")
    for path, caption in content.figures:
        parts.append(f'<figure><img src="{inline_png(path)}" alt="{esc(caption)}">'
                     f"<figcaption>{esc(caption)}</figcaption></figure>")

    parts.append("<h2>Reconstructions</h2>")
    if not content.grids:
        parts.append('<p class="note">No reconstruction grids were saved (output.save_images off, or no attack '
                     "finished yet).</p>")
    else:
        parts.append('<p class="note">Each grid: the client\'s true images (top row) and the reconstruction '
                     "(bottom row, matched one-to-one to the true images; grey when the attack recovered "
                     "nothing).</p>")
    group = None
    for grid in content.grids:
        if grid.group != group:
            group = grid.group
            parts.append(f"<h3>{esc(group)}</h3>")
        parts.append(f'<figure><img class="grid" src="{inline_png(grid.path)}" alt="{esc(grid.caption)}">'
                     f"<figcaption>{esc(grid.caption)}</figcaption></figure>")
    if content.grids_left_out:
        parts.append(f'<p class="note">{content.grids_left_out} more grids are in <code>images/</code> '
                     "(left out of the page to keep it small).</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
