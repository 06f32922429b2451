"""The report's tables that answer first: worst case per client, then each attack on each client.

Both list the worst clients first and stop at :data:`MAX_ROWS` clients; the full table is written beside the page as
CSV and linked from it (inlined as a data: link, so the page stays self-contained). A PSNR at or below the
mean-image baseline is written "no leakage", with the numbers in the cell's tooltip.
"""

from __future__ import annotations

import base64
import csv
import io
import math
from pathlib import Path
from typing import Any

from fedleak.report.html import esc, fmt, table
from fedleak.report.tables import AttackClientSummary
from fedleak.report.worst import AGGREGATE, ClientLeakage

#: Clients shown in a table before the rest go to the CSV only.
MAX_ROWS = 20
CLIENTS_FILE = "clients.csv"

#: What an ε means, per unit (one sentence each, as the page states them).
DP_UNITS = {
    "record": "ε per record (DP-SGD): how much any one training example can change what the client sends, composed "
              "over the rounds the client took part in.",
    "update": "ε per update (local DP): the Gaussian mechanism on the client's whole clipped update, composed over the "
              "client's rounds; it protects the update as a whole, not each example in it.",
    "update(replace-one)": "ε per update (local DP, replace-one): how well the server can tell the client's clipped "
                           "update from any other clipped update (sensitivity 2C), composed over the client's rounds; "
                           "it protects the update as a whole, not each example in it.",
    "update(zero-update)": "ε per update (local DP, zero-update): how well the server can tell the client's clipped "
                           "update from no update at all (sensitivity C, a weaker relation than replace-one), composed "
                           "over the client's rounds.",
}


def psnr_cell(value: float | None, baseline: float | None, reidentified: float | None = None) -> tuple[str, bool]:
    """A PSNR, or "no leakage" when it is at or below the baseline (the numbers stay in the tooltip).

    PSNR misses noisy but recognisable reconstructions: when some were re-identified, the cell says so instead of
    "no leakage".
    """
    if value is not None and baseline is not None and value <= baseline:
        title = f"{fmt(value)} dB ≤ baseline {fmt(baseline)} dB"
        if reidentified:
            return f'<span title="{title}">≤ baseline, yet {percent(reidentified)} re-identified</span>', False
        return f'<span class="none" title="{title}">no leakage</span>', False
    return fmt(value), True


def percent(value: float | None) -> str:
    return fmt(None if value is None else 100 * value, 0, " %")


def client_name(client: int) -> str:
    return "aggregate" if client == AGGREGATE else str(client)


def epsilon(client: ClientLeakage) -> str:
    if client.dp_epsilon is None:
        return "–"
    unit = f" per {client.dp_unit}" if client.dp_unit else " (unit not recorded)"
    return f"{fmt(client.dp_epsilon, 2)}{unit}" + (f", δ {client.dp_delta:g}" if client.dp_delta else "")


CLIENT_HEADER = ["client", "batch size", "training", "defense", "ε", "rounds attacked", "worst-case PSNR (dB)",
                 "baseline (dB)", "above baseline", "re-identified", "strongest attack"]


def _client_cells(c: ClientLeakage) -> list[Any]:
    """One client's cells as values (the CSV keeps them raw; the page formats them)."""
    return [client_name(c.client), "/".join(map(str, c.batch_sizes)) or "–", c.training, ", ".join(c.defenses),
            epsilon(c), c.rounds, c.worst_median_psnr, c.baseline, c.leaked, c.reidentified, c.strongest]


#: clients.csv's columns: the page's table for programs (snake_case, raw values, empty where a value is missing).
CLIENT_COLUMNS = ["client", "batch_sizes", "training", "defenses", "dp_epsilon", "dp_delta", "dp_unit",
                  "rounds_attacked", "images_attacked", "worst_median_psnr", "baseline_psnr", "above_baseline",
                  "reidentified", "strongest_attack"]


def _client_values(c: ClientLeakage) -> list[Any]:
    """One client's clients.csv cells (client -1 is the secure-aggregation aggregate, as in leakage.csv)."""
    return [c.client, " ".join(map(str, c.batch_sizes)), c.training, "; ".join(c.defenses), c.dp_epsilon,
            c.dp_delta, c.dp_unit or None, c.rounds, c.images, c.worst_median_psnr, c.baseline, c.leaked,
            c.reidentified, c.strongest or None]


def client_table(clients: list[ClientLeakage], run_dir: Path) -> str:
    """The summary table (worst first), the DP units the run uses, and the CSV of every client."""
    if not clients:
        return '<p class="warn">No leakage rows yet: no attack result was recorded (see the notes above).</p>'
    rows = []
    for c in clients[:MAX_ROWS]:
        cells = _client_cells(c)
        if c.images == 0:
            worst = ("not attacked (every attack skipped)", False)
        elif c.worst_median_psnr is None:
            worst = ("nothing reconstructed", False)
        else:
            worst = psnr_cell(c.worst_median_psnr, c.baseline, c.reidentified)
        rows.append([(esc(v), i in (0, 5)) for i, v in enumerate(cells[:6])] + [worst, (fmt(c.baseline), True)]
                    + [(percent(c.leaked), True), (percent(c.reidentified), True), (esc(c.strongest), False)])
    parts = [table(CLIENT_HEADER, rows)]
    parts.append(_csv_link(run_dir / CLIENTS_FILE, CLIENT_COLUMNS, [_client_values(c) for c in clients],
                           len(clients)))
    units = sorted({c.dp_unit for c in clients if c.dp_unit in DP_UNITS})
    parts += [f'<p class="note">{esc(DP_UNITS[u])}</p>' for u in units]
    return "\n".join(parts)


ATTACK_HEADER = ["client", "attack", "attempts (ok)", "median PSNR per image (dB)", "baseline (dB)", "median SSIM",
                 "label accuracy", "success rate", "re-identified", "mean time (s)", "failures"]


#: attacks_per_client.csv's columns (snake_case, raw values, empty where missing).
ATTACK_COLUMNS = ["client", "attack", "attempts", "ok", "median_psnr", "baseline_psnr", "median_ssim",
                  "mean_label_accuracy", "success_rate", "reidentified", "mean_seconds", "failure_reasons"]


def _attack_values(s: AttackClientSummary) -> list[Any]:
    reasons = "; ".join(f"{n}x {reason}" for reason, n in s.failure_reasons.most_common())
    return [s.client, s.attack, s.attempts, s.ok, s.median_psnr, s.baseline, s.median_ssim, s.mean_label_accuracy,
            s.success_rate, s.reidentified, s.mean_seconds, reasons or None]


def _attack_cells(s: AttackClientSummary) -> list[Any]:
    """One (client, attack) pair's cells as values (the CSV keeps them raw; the page formats them)."""
    reasons = "; ".join(f"{n}× {reason}" for reason, n in s.failure_reasons.most_common())
    return [client_name(s.client), s.attack, f"{s.attempts} ({s.ok})", s.median_psnr, s.baseline, s.median_ssim,
            s.mean_label_accuracy, s.success_rate, s.reidentified, s.mean_seconds, reasons or "none"]


def attack_table(summaries: list[AttackClientSummary], order: list[int], run_dir: Path, name: str) -> str:
    """Each attack on each client, clients in ``order`` (worst first), at most :data:`MAX_ROWS` clients shown."""
    rank = {client: i for i, client in enumerate(order)}
    summaries = sorted(summaries, key=lambda s: (rank.get(s.client, len(rank)), s.attack))
    shown = {c for c in order[:MAX_ROWS]} or {s.client for s in summaries}
    rows = []
    for s in summaries:
        if s.client not in shown:
            continue
        cells = _attack_cells(s)
        rows.append([(esc(cells[0]), True), (esc(cells[1]), False), (esc(cells[2]), True),
                     psnr_cell(s.median_psnr, s.baseline, s.reidentified), (fmt(s.baseline), True),
                     (fmt(s.median_ssim, 3), True)] + [(percent(v), True) for v in cells[6:9]]
                    + [(fmt(s.mean_seconds, 1), True), (esc(cells[10]), False)])
    link = _csv_link(run_dir / name, ATTACK_COLUMNS, [_attack_values(s) for s in summaries], len(order))
    return table(ATTACK_HEADER, rows) + "\n" + link


def _csv_link(path: Path, header: list[str], rows: list[list[Any]], clients: int) -> str:
    """Write the full table as CSV and link it (inlined); say how many clients the page leaves out."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows([[_csv_value(v) for v in row] for row in rows])
    path.write_text(buffer.getvalue(), encoding="utf-8")
    data = base64.b64encode(buffer.getvalue().encode("utf-8")).decode("ascii")
    cut = f"{clients - MAX_ROWS} more clients are only in " if clients > MAX_ROWS else "Every client: "
    return (f'<p class="note">{cut}<a download="{esc(path.name)}" href="data:text/csv;base64,{data}">'
            f"{esc(path.name)}</a> (also in the run directory).</p>")


def _csv_value(value: Any) -> Any:
    """Empty for None, floats rounded to 4 decimals (the page shows 2) — small ones such as δ = 1e-5 to 4
    significant digits, which 4 decimals would turn into 0 —, everything else as is."""
    if value is None:
        return ""
    if not isinstance(value, float):
        return value
    return round(value, 4) if value == 0 or abs(value) >= 1e-3 or not math.isfinite(value) else float(f"{value:.4g}")
