"""The bound beside the attack: each DP arm's reconstruction-robustness bound next to the re-identification rate
its strongest attack measured (Balle, Cherubin & Hayes 2022; Hayes, Mahloujifar & Balle 2023, arXiv 2302.07225).

Prior: a uniform guess over the re-identification gallery. The scorer asks re-identification in a fixed gallery per
data source plus the update's own images (:mod:`fedleak.metrics.gallery`; rows carry ``gallery_size`` without the
batch): κ = 1 / (gallery_size + 1), the largest mass a uniform prior over any such candidate set puts on the target
(a larger κ only loosens the bound). Rows without ``gallery_size`` (older runs) fall back to every image of the
data source, the set the scorer searched then. Per client the bound is that of
its defense over every round it took part in (valid for an attack on any of those rounds' updates). The measured
rate of an attack on a client is the share of the images it was run on (skipped updates left out, a failed attack's
images counted as not re-identified) that it re-identified; the strongest attack is the one with the highest rate.
A rate whose 95 % Clopper–Pearson lower limit lies above its bound cannot come from a correct implementation of
the mechanism the accountant describes: the arm is flagged.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from scipy.stats import beta

from fedleak.config.loader import validate_scenario
from fedleak.errors import UserError
from fedleak.federated_data import FederatedData
from fedleak.participation import rounds_taken_part
from fedleak.report.tables import Row, is_number
from fedleak.training import LocalTraining


@dataclass(frozen=True)
class ClientBound:
    """One client of one arm: its ReRo bound, the strongest attack's measured rate and the images it rests on."""

    client: int
    rero_bound: float
    reidentified_rate: float
    images: int
    attack: str

    @property
    def violated(self) -> bool:
        """The rate's 95 % lower confidence limit lies above the bound."""
        found = round(self.reidentified_rate * self.images)
        lower = 0.0 if found == 0 else float(beta.ppf(0.05, found, self.images - found + 1))
        return lower > self.rero_bound


def strongest_rates(rows: list[Row]) -> dict[int, tuple[float, int, str]]:
    """Per client: (re-identified share, images, attack) of the attack that re-identified the largest share."""
    counts: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0])
    computed: set[tuple[int, str]] = set()  # re-identification was computed on some update of this pair
    for row in rows:
        status = row.get("status")
        if status == "skipped" or not is_number(row.get("client")):
            continue
        key = (int(row["client"]), str(row.get("attack")))
        flags = str(row.get("reidentified_per_image") or "").split()
        if status == "ok" and flags:
            counts[key][0] += sum(flag == "1" for flag in flags)
            counts[key][1] += len(flags)  # "-": unmatched (or not computed), counted as not re-identified
            if any(flag in ("0", "1") for flag in flags):
                computed.add(key)
        elif status != "ok" and is_number(row.get("batch_size")):
            counts[key][1] += int(row["batch_size"])
    best: dict[int, tuple[float, int, str]] = {}
    for (client, attack), (found, total) in counts.items():
        if (client, attack) in computed and (client not in best or found / total > best[client][0]):
            best[client] = (found / total, total, attack)
    return best


def arm_bounds(scenario_raw: dict[str, Any], rows: list[Row]) -> list[ClientBound]:
    """The clients of one DP arm with a measured rate, each beside its bound (empty for an arm without DP)."""
    rates = strongest_rates(rows)
    if not rates:
        return []
    try:
        scenario = validate_scenario(scenario_raw)
        data = FederatedData(scenario)
    except (UserError, ValueError):  # an arm folder whose scenario cannot be rebuilt still gets its measured rate
        return []
    sizes = [int(r["gallery_size"]) for r in rows if is_number(r.get("gallery_size"))]
    kappa = 1.0 / (min(sizes) + 1) if sizes else 1.0 / len(data.images)
    clients, last = scenario.clients, scenario.training.rounds
    bounds = []
    for client, (rate, images, attack) in sorted(rates.items()):
        if not 0 <= client < clients.count:
            continue  # the secure aggregate (client −1) is no one client's release
        plan = LocalTraining.of(scenario, client)
        rounds = len(rounds_taken_part(clients.count, clients.per_round, scenario.seed, client, last))
        bound = scenario.client_defense(client).rero(plan, len(data.shards[client]), max(rounds, 1), kappa)
        if bound is not None:
            bounds.append(ClientBound(client, bound, rate, images, attack))
    return bounds


def worst_client(bounds: list[ClientBound]) -> ClientBound | None:
    """The client whose strongest attack re-identified the largest share (ties: the tighter bound)."""
    return max(bounds, key=lambda b: (b.reidentified_rate, -b.rero_bound), default=None)
