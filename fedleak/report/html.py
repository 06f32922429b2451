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

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; padding: 0 1rem; color: #222;
       line-height: 1.45; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.6rem 0; font-size: 0.85rem; max-width: 100%; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.45rem; text-align: left; vertical-align: top;
         overflow-wrap: normal; word-break: normal; hyphens: manual; }
td.num, th.num { white-space: nowrap; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.note { color: #555; font-size: 0.9rem; } .warn { color: #a00; } .none { color: #777; font-style: italic; }
figure { display: inline-block; margin: 0.5rem 1rem 0.5rem 0; vertical-align: top; max-width: 100%; }
figure img { max-width: 100%; height: auto; }
figcaption { font-size: 0.85rem; color: #444; } img.grid { image-rendering: pixelated; border: 1px solid #ddd; }
code { background: #f3f3f3; padding: 0 0.2rem; }
"""


#: The set-up's client table is left out above this many clients (the summary's CSV lists them all).
MAX_SETUP_ROWS = 20


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
    run_line: str
    scenario_rows: list[tuple[str, str]]
    client_rows: list[dict[str, Any]]
    attack_rows: list[dict[str, Any]]
    #: Rendered by fedleak.report.sections: the worst case per client, and each attack on each client.
    client_table: str
    attack_table: str
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
    if value == float("-inf"):  # a median image nobody reconstructed (fedleak.metrics.headline)
        return "−∞"
    return f"{value:.{digits}f}{unit}"


def table(header: Iterable[str], rows: Iterable[Iterable[tuple[str, bool]]]) -> str:
    """HTML table; each cell is (already escaped html, is_numeric)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if num else f"<td>{c}</td>" for c, num in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(path: Path, caption: str, css: str = "") -> str:
    return (f'<figure><img{css} src="{inline_png(path)}" alt="{esc(caption)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def render(content: ReportContent) -> str:
    """The whole page as one HTML string: the answer first (worst case per client), then figures, details, set-up,
    and the reconstructions last."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(content.title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{esc(content.title)}</h1>",
        f'<p class="note">{esc(content.run_line)} Run directory: <code>{esc(content.run_dir)}</code>. An '
        "honest-but-curious server aggregated every client update unchanged and ran gradient-leakage attacks on a "
        "copy; each reconstruction was scored against the client's true images, which the attacks never saw.</p>",
    ]
    parts += [f'<p class="warn">{esc(note)}</p>' for note in content.notes]
    parts.append("<h2>Worst case per client</h2>")
    parts.append('<p class="note">Per attacked image, the highest PSNR any attack reached on it (worst case); per '
                 "client, the median of that over its attacked images, worst clients first (re-identified share, "
                 "then PSNR above the baseline). <b>No leakage</b>: at or below the PSNR of the dataset's mean "
                 "image, which any server can output without looking at an update, and no image re-identified "
                 "(noisy reconstructions can score under the baseline and still name the image).</p>")
    parts.append(content.client_table)
    parts.append("<h2>Figures</h2>")
    parts += [_figure(path, caption) for path, caption in content.figures]
    parts.append("<h2>Each attack on each client</h2>")
    parts.append(content.attack_table)
    parts.append("<h2>How to read the numbers</h2>")
    parts.append('<ul class="note">' + "".join(f"<li>{note}</li>" for note in content.metric_notes) + "</ul>")
    parts += _setup(content)
    parts += _reconstructions(content)
    parts.append("</body></html>")
    return "\n".join(parts)


def _setup(content: ReportContent) -> list[str]:
    parts = ["<h2>Scenario</h2>"]
    parts.append(table(["setting", "value"], [[(esc(k), False), (esc(v), False)] for k, v in content.scenario_rows]))
    if len(content.client_rows) > MAX_SETUP_ROWS:
        parts.append(f'<p class="note">{len(content.client_rows)} clients: each one\'s batch size, training and '
                     "defense are in the summary's CSV and in scenario.yaml.</p>")
    elif content.client_rows:
        keys = list(content.client_rows[0])
        parts.append("<h3>Clients</h3>")
        parts.append(table(keys, [[(esc(row[k]), True) for k in keys] for row in content.client_rows]))
    if content.attack_rows:
        keys = list(content.attack_rows[0])
        parts.append("<h3>Attacks</h3>")
        parts.append(table(keys, [[(esc(row[k]), False) for k in keys] for row in content.attack_rows]))
    return parts


def _reconstructions(content: ReportContent) -> list[str]:
    parts = ["<h2>Reconstructions</h2>"]
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
        parts.append(_figure(grid.path, grid.caption, ' class="grid"'))
    if content.grids_left_out:
        parts.append(f'<p class="note">{content.grids_left_out} more grids are in <code>images/</code> '
                     "(left out of the page to keep it small).</p>")
    return parts
