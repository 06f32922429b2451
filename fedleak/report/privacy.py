"""The privacy a run spent, read from rounds.csv: every client's cumulative ε after each round it took part in.

A client's ε is what it had spent by the end of the run (its figure after the last round it took part in), whether
or not any attack ran on its updates; an arm's ε is the largest over its clients. rounds.csv carries, aligned with
``participants``, each participant's ``dp_epsilon``, ``dp_delta`` and ``dp_unit`` after that round (``-`` for a
client whose defense gives no DP guarantee).

Run directories written before rounds.csv carried ε only have ε on their leakage rows, i.e. at the rounds that were
attacked: :func:`arm_spend` then falls back to the largest of those, which can be lower than the spend at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TypeVar

from fedleak.report.tables import Row, is_number

#: A per-client summary with ``client``, ``dp_epsilon``, ``dp_delta`` and ``dp_unit`` (the report's ClientLeakage).
Summary = TypeVar("Summary")

#: rounds.csv's columns of the privacy spent, aligned with ``participants``; ``-`` marks a client without DP.
SPEND_COLUMNS = ("dp_epsilon", "dp_delta", "dp_unit")
NO_GUARANTEE = "-"


@dataclass(frozen=True)
class ClientSpend:
    """What one client had spent after the last round it took part in."""

    client: int
    round: int
    epsilon: float
    delta: float | None
    unit: str


def spend_cells(spent: dict[int, dict]) -> dict[str, str]:
    """rounds.csv's privacy columns for one round: ``spent`` maps each participant to its reply's ``dp_epsilon``,
    ``dp_delta`` and ``dp_unit`` (None / empty without DP); the cells follow the sorted participants."""
    def cell(value: object) -> str:
        return NO_GUARANTEE if value is None or value == "" else str(value)

    return {column: " ".join(cell(spent[c].get(column)) for c in sorted(spent)) for column in SPEND_COLUMNS}


def _cells(row: Row, column: str) -> list[str]:
    value = row.get(column)
    return [] if value is None or value == "" else str(value).split()


def spend_per_round(rounds: list[Row]) -> dict[tuple[int, int], ClientSpend]:
    """(round, client) -> the client's cumulative ε after that round, for every participant with a DP defense."""
    spent: dict[tuple[int, int], ClientSpend] = {}
    for row in rounds:
        if not is_number(row.get("round")):
            continue
        clients = _cells(row, "participants")
        epsilons, deltas, units = (_cells(row, c) for c in SPEND_COLUMNS)
        if len(epsilons) != len(clients):
            continue  # an older rounds.csv, or a damaged row: no per-client spend
        for i, (client, epsilon) in enumerate(zip(clients, epsilons, strict=True)):
            if epsilon == NO_GUARANTEE:
                continue
            delta = deltas[i] if i < len(deltas) and deltas[i] != NO_GUARANTEE else None
            unit = units[i] if i < len(units) and units[i] != NO_GUARANTEE else ""
            key = (int(row["round"]), int(client))
            spent[key] = ClientSpend(int(client), key[0], float(epsilon), float(delta) if delta else None, unit)
    return spent


def spend_at_end(rounds: list[Row]) -> dict[int, ClientSpend]:
    """Client -> its cumulative ε after the last round it took part in (what it had spent by the end)."""
    last: dict[int, ClientSpend] = {}
    for (_, client), spend in sorted(spend_per_round(rounds).items()):
        last[client] = spend
    return last


def arm_spend(rounds: list[Row], leakage: list[Row]) -> tuple[float | None, str]:
    """An arm's ε and its unit: the largest over its clients after the last round (see the module docstring for
    run directories whose rounds.csv has no ε)."""
    at_end = spend_at_end(rounds)
    if at_end:
        top = max(at_end.values(), key=lambda s: s.epsilon)
        return top.epsilon, top.unit
    spent = [r for r in leakage if is_number(r.get("dp_epsilon"))]
    if not spent:
        return None, ""
    top_row = max(spent, key=lambda r: float(r["dp_epsilon"]))
    return float(top_row["dp_epsilon"]), str(top_row.get("dp_unit") or "")


def with_spend_at_end(summaries: list[Summary], rounds: list[Row]) -> list[Summary]:
    """Per-client summaries whose ε is what the client had spent by the end (from rounds.csv) instead of the largest
    ε among its attacked rows; unchanged where rounds.csv carries no ε (an older run)."""
    at_end = spend_at_end(rounds)
    return [replace(s, dp_epsilon=at_end[s.client].epsilon, dp_delta=at_end[s.client].delta,  # type: ignore[attr-defined]
                    dp_unit=at_end[s.client].unit) if s.client in at_end else s for s in summaries]  # type: ignore[attr-defined]
