"""Membership in the report: per client its worst round beside its reconstruction worst case, AUC per client per round
on the accuracy's round axis, and each arm's worst client for the frontier. Everything is derived from membership.csv
(``fedleak.types.MembershipRecord``), nothing stored twice.

Worst case per client: the (round, attack) with the highest AUC over the client's scored updates; the TPR at 1 % FPR
is likewise the highest over them (it may come from another round), each with the interval and counts of its own row.
An AUC whose interval holds ½ shows no membership signal at that size: a finding, shown as measured.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fedleak.report.html import esc, fmt, table
from fedleak.report.tables import Row, is_number, read_table
from fedleak.report.worst import AGGREGATE, ClientLeakage

MEMBERSHIP_FILE = "membership.csv"
#: Lines drawn at most in the figure (the clients with the highest AUC first); the table lists every client.
MAX_LINES = 10


def read_membership(path: Path) -> list[Row]:
    """The scored rows of membership.csv (an absent file: none)."""
    return read_table(path).rows


def _ok(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r.get("status") == "ok" and is_number(r.get("auc"))]


@dataclass(frozen=True)
class ClientMembership:
    """One client's worst membership figure over its scored updates."""

    client: int
    updates: int  # scored updates (round × attack)
    worst_auc: Row  # the row with the highest AUC
    worst_tpr: Row  # the row with the highest TPR at 1 % FPR
    failed: int


def client_membership(rows: list[Row]) -> dict[int, ClientMembership]:
    """Per client (the aggregate under secure aggregation included), its worst AUC and TPR rows."""
    by_client: dict[int, list[Row]] = defaultdict(list)
    for row in rows:
        by_client[int(row.get("client") or 0)].append(row)
    result = {}
    for client, group in by_client.items():
        ok = _ok(group)
        if ok:
            result[client] = ClientMembership(
                client, len(ok), max(ok, key=lambda r: float(r["auc"])),
                max(ok, key=lambda r: float(r.get("tpr_at_1pct_fpr") or 0.0)), len(group) - len(ok))
    return result


def arm_membership(rows: list[Row]) -> tuple[float | None, float | None]:
    """(highest AUC, highest TPR at 1 % FPR) over the arm's clients, rounds and attacks: its worst client."""
    ok = _ok(rows)
    if not ok:
        return None, None
    return max(float(r["auc"]) for r in ok), max(float(r.get("tpr_at_1pct_fpr") or 0.0) for r in ok)


def auc_per_round(rows: list[Row]) -> dict[int, list[tuple[int, float, float, float]]]:
    """Per client: (round, AUC, low, high) of the attack with the highest AUC on that round's update."""
    best: dict[tuple[int, int], Row] = {}
    for row in _ok(rows):
        key = (int(row.get("client") or 0), int(row["round"]))
        if key not in best or float(row["auc"]) > float(best[key]["auc"]):
            best[key] = row
    series: dict[int, list[tuple[int, float, float, float]]] = defaultdict(list)
    for (client, round_), row in sorted(best.items()):
        series[client].append((round_, float(row["auc"]), float(row["auc_low"]), float(row["auc_high"])))
    return dict(series)


def membership_plot(rounds: list[Row], rows: list[Row], path: Path) -> Path:
    """Held-out accuracy per round (top) and, per client, the AUC of its update in each attacked round with the 95 %
    interval (bottom), on one shared round axis; chance (½) dashed."""
    figure = Figure(figsize=(7.2, 5.6), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(1, 2))
    accuracy = sorted((int(r["round"]), float(r["accuracy"])) for r in rounds
                      if is_number(r.get("round")) and is_number(r.get("accuracy")))
    if accuracy:
        top.plot(*zip(*accuracy, strict=True), marker="o", color="tab:blue")
        top.set_ylim(0, 1.02)
    top.set_ylabel("global accuracy")
    top.grid(True, alpha=0.3)
    series = auc_per_round(rows)
    shown = sorted(series, key=lambda c: max(a for _, a, _, _ in series[c]), reverse=True)[:MAX_LINES]
    for i, client in enumerate(shown):
        points = series[client]
        shift = (i - (len(shown) - 1) / 2) * 0.06  # side by side, so the intervals do not hide each other
        xs = [x + shift for x, *_ in points]
        ys = [a for _, a, _, _ in points]
        errors = [[a - lo for _, a, lo, _ in points], [hi - a for _, a, _, hi in points]]
        name = "aggregate" if client == AGGREGATE else f"client {client}"
        bottom.errorbar(xs, ys, yerr=errors, marker="o", capsize=2, linewidth=1.0, label=name)
    bottom.axhline(0.5, color="black", linewidth=0.8, linestyle="--", label="chance (AUC ½)")
    bottom.set_ylabel("membership AUC per update\n(best attack, 95 % interval)")
    bottom.set_xlabel("round")
    bottom.grid(True, alpha=0.3)
    bottom.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    all_rounds = sorted({x for x, _ in accuracy} | {x for c in series for x, *_ in series[c]})
    if all_rounds and len(all_rounds) <= 20:
        bottom.set_xticks(all_rounds)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def _auc_cell(row: Row) -> str:
    return (f"{fmt(row['auc'], 3)} [{fmt(row['auc_low'], 3)}, {fmt(row['auc_high'], 3)}] "
            f"(round {row['round']}, {esc(row['attack'])}; {row['members']}+{row['non_members']})")


def _tpr_cell(row: Row) -> str:
    return (f"{fmt(100 * float(row['tpr_at_1pct_fpr']), 1)} % [{fmt(100 * float(row['tpr_at_1pct_fpr_low']), 1)}, "
            f"{fmt(100 * float(row['tpr_at_1pct_fpr_high']), 1)}] ({row['true_positives_at_1pct_fpr']}/"
            f"{row['members']} members, {row['false_positives_at_1pct_fpr']}/{row['non_members']} false)")


def _reconstruction_cell(leak: ClientLeakage | None) -> str:
    if leak is None:
        return "not attacked"
    if leak.images == 0:
        return "not feasible: every reconstruction attack skipped (update over max_images)"
    if leak.worst_median_psnr is None:
        return f"nothing reconstructed ({leak.images} images attacked)"
    return f"{fmt(leak.worst_median_psnr)} dB median worst case (baseline {fmt(leak.baseline)} dB)"


HEADER = ["client", "records per update", "reconstruction (worst case)", "membership AUC, worst update [95 %]",
          "TPR at 1 % FPR, worst update [95 %]", "scored updates"]


def side_by_side(rows: list[Row], clients: list[ClientLeakage]) -> str:
    """Worst case per client, reconstruction and membership side by side; '' when the run has no membership rows."""
    membership = client_membership(rows)
    if not rows:
        return ""
    leak = {c.client: c for c in clients}
    order = sorted(membership, key=lambda c: float(membership[c].worst_auc["auc"]), reverse=True)
    order += sorted(set(leak) - set(order))
    body = []
    for client in order:
        m = membership.get(client)
        trained = m.worst_auc.get("trained") if m else None
        cells = [(esc("aggregate" if client == AGGREGATE else client), True), (fmt(trained, 0), True),
                 (esc(_reconstruction_cell(leak.get(client))), False)]
        if m is None:
            cells += [("no membership row scored", False), ("–", False), ("0", True)]
        else:
            cells += [(_auc_cell(m.worst_auc), False), (_tpr_cell(m.worst_tpr), False),
                      (f"{m.updates}" + (f" ({m.failed} failed)" if m.failed else ""), True)]
        body.append(cells)
    threat = esc(next((r.get("threat") for r in rows if r.get("threat")), ""))
    return ("<h3>Worst case per client: reconstruction and membership side by side</h3>\n" + table(HEADER, body)
            + f'\n<p class="note">Membership threat model: {threat}. AUC interval: Hanley &amp; McNeil, widened to '
            "Clopper–Pearson over min(members, non-members) comparisons; TPR interval: Clopper–Pearson; the TPR's "
            "threshold is the best one at ≤ 1 % FPR, chosen knowing membership (the "
            "attack's best operating point). Members are capped by the held-out split, with as many non-members "
            "(counts in each cell). Every row: membership.csv.</p>")
