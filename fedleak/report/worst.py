"""Worst-case leakage per attacked image and per client, derived from leakage.csv (never stored twice).

Per attacked image (one true image of one update, i.e. one round and client): the highest PSNR any attack reached
on it, which attack reached it, the image's mean-image baseline, and whether any attack re-identified it. A client's
summary gathers its attacked images over every round. An image whose worst-case PSNR is at or below its baseline
shows no leakage: the dataset's mean image, which needs no update at all, scores as well.

A client's headline is the median over *all* its attacked images by :mod:`fedleak.metrics.headline`'s rule: an image
no attack reconstructed counts as not recovered (−∞), an even count takes the worse middle image, and ∞ needs every
image exact.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from fedleak.metrics.headline import median_psnr
from fedleak.report.tables import Row, is_number

#: leakage.csv's client number for the secure-aggregation aggregate.
AGGREGATE = -1


@dataclass(frozen=True)
class ImageFacts:
    """One attacked image: worst case over the attacks on its update."""

    round: Any
    client: Any
    psnr: float | None  # None: no attack reconstructed it
    attack: str | None
    baseline: float | None
    reidentified: bool | None  # None: not computed (no dataset, or images under SSIM's window)

    @property
    def leaked(self) -> bool | None:
        """PSNR above the mean image's; None without a baseline. Unreconstructed images leaked nothing."""
        if self.baseline is None:
            return None
        return self.psnr is not None and self.psnr > self.baseline


def _tokens(row: Row, key: str) -> list[str]:
    return str(row.get(key) or "").split()


def _number(token: str | None) -> float | None:
    try:
        value = float(token) if token is not None else math.nan
    except ValueError:
        return None
    return None if math.isnan(value) else value


def _at(values: list[str], i: int) -> str | None:
    return values[i] if i < len(values) else None


def worst_images(rows: list[Row]) -> list[ImageFacts]:
    """Every attacked image of every update, in (round, client) order, with its worst case over the attacks.

    An update whose attacks all failed still counts its batch size in images, none reconstructed. Skipped rows (an
    attack that declined, e.g. over its image cap) attacked nothing: an update with only those has no images here.
    """
    updates: dict[tuple[Any, Any], list[Row]] = defaultdict(list)
    for row in rows:
        if row.get("status") != "skipped":
            updates[(row.get("round"), row.get("client"))].append(row)
    facts = []
    for (round_, client), group in sorted(updates.items(), key=lambda item: tuple(map(_order, item[0]))):
        ok = [r for r in group if r.get("status") == "ok"]
        count = max((len(_tokens(r, "psnr_per_image")) for r in ok), default=0)
        if count == 0:
            count = max((int(r["batch_size"]) for r in group if is_number(r.get("batch_size"))), default=0)
        for i in range(count):
            facts.append(_image(round_, client, ok, i))
    return facts


def _order(value: Any) -> tuple[int, float, str]:
    """Numbers in numeric order (round 10 after round 2), anything else after them."""
    return (0, float(value), "") if is_number(value) else (1, 0.0, str(value))


def _image(round_: Any, client: Any, ok: list[Row], i: int) -> ImageFacts:
    """Image ``i`` of one update: best PSNR over the successful rows, its attack, baseline, any re-identification."""
    scored = [(_number(_at(_tokens(r, "psnr_per_image"), i)), str(r.get("attack"))) for r in ok]
    scored = [(value, attack) for value, attack in scored if value is not None]
    psnr, attack = max(scored, default=(None, None), key=lambda pair: pair[0])
    baselines = [_number(_at(_tokens(r, "baseline_psnr_per_image"), i)) for r in ok]
    flags = [_at(_tokens(r, "reidentified_per_image"), i) for r in ok]
    known = [flag for flag in flags if flag in ("0", "1")]
    found = None if not known else "1" in known
    baseline = next((b for b in baselines if b is not None), None)
    return ImageFacts(round_, client, psnr, attack, baseline, found)


@dataclass
class ClientLeakage:
    """What one client did and the worst an attack made of its updates, over every round it was attacked."""

    client: int
    batch_sizes: list[int]
    training: str
    defenses: list[str]
    dp_epsilon: float | None
    dp_unit: str
    dp_delta: float | None
    rounds: int
    images: int
    #: Median over all its attacked images of the worst-case PSNR (an image no attack reconstructed: −∞; None: no
    #: attacked image at all).
    worst_median_psnr: float | None
    best_psnr: float | None
    baseline: float | None
    #: Share of its attacked images above their baseline / re-identified by at least one attack.
    leaked: float | None
    reidentified: float | None
    strongest: str
    attacks: list[str] = field(default_factory=list)

    @property
    def no_leakage(self) -> bool:
        """Nothing re-identified, and the worst-case median at or below the baseline (or its median image not
        recovered)."""
        if self.reidentified:
            return False
        if self.worst_median_psnr is None or self.worst_median_psnr == -math.inf:
            return True
        return self.baseline is not None and self.worst_median_psnr <= self.baseline

    def severity(self) -> tuple[float, float, float]:
        """Sort key, largest first: re-identified share, PSNR above the baseline, then the PSNR itself."""
        psnr = -math.inf if self.worst_median_psnr is None else self.worst_median_psnr
        margin = psnr - self.baseline if self.baseline is not None else psnr
        return (self.reidentified or 0.0, margin, psnr)


def client_leakage(rows: list[Row]) -> list[ClientLeakage]:
    """One summary per client (the aggregate under secure aggregation included), worst first."""
    images: dict[int, list[ImageFacts]] = defaultdict(list)
    for fact in worst_images(rows):
        images[int(fact.client or 0)].append(fact)
    by_client: dict[int, list[Row]] = defaultdict(list)
    for row in rows:
        by_client[int(row.get("client") or 0)].append(row)
    summaries = [_summarise(client, by_client[client], images.get(client, [])) for client in by_client]
    return sorted(summaries, key=lambda s: s.severity(), reverse=True)


def _summarise(client: int, rows: list[Row], facts: list[ImageFacts]) -> ClientLeakage:
    found = [f.psnr for f in facts if f.psnr is not None]
    baselines = [f.baseline for f in facts if f.baseline is not None]
    epsilon_row = max((r for r in rows if is_number(r.get("dp_epsilon"))), key=lambda r: r["dp_epsilon"], default={})
    return ClientLeakage(
        client=client,
        batch_sizes=sorted({int(r["batch_size"]) for r in rows if is_number(r.get("batch_size"))}),
        training=training_label(rows),
        defenses=sorted({str(r.get("defense") or "none") for r in rows}),
        dp_epsilon=epsilon_row.get("dp_epsilon"), dp_unit=str(epsilon_row.get("dp_unit") or ""),
        dp_delta=epsilon_row.get("dp_delta"),
        rounds=len({r.get("round") for r in rows}),
        images=len(facts),
        worst_median_psnr=median_psnr(f.psnr for f in facts),
        best_psnr=max(found) if found else None,
        baseline=median_psnr(baselines),
        leaked=_share([f.leaked for f in facts]),
        reidentified=_share([f.reidentified for f in facts]),
        strongest=_strongest(facts),
        attacks=sorted({str(r.get("attack")) for r in rows}),
    )


def _share(flags: list[bool | None]) -> float | None:
    """Share of True among the images; None when any image has no answer (the column was not computed)."""
    if not flags or any(flag is None for flag in flags):
        return None
    return sum(flags) / len(flags)


def _strongest(facts: list[ImageFacts]) -> str:
    """The attack that gave the worst case most often ('–' when none reconstructed anything)."""
    counts = Counter(f.attack for f in facts if f.attack is not None)
    return counts.most_common(1)[0][0] if counts else "–"


def training_label(rows: list[Row]) -> str:
    """How the client trained, from its rows: 'gradient', '5 local steps', '2 epochs' (several values joined)."""
    labels = set()
    for row in rows:
        kind = str(row.get("update_kind") or "")
        if kind == "epochs":
            labels.add(f"{row.get('local_epochs') or '?'} epoch(s)")
        elif kind == "local_steps":
            labels.add(f"{row.get('local_steps')} local steps")
        elif kind:
            labels.add("one gradient" if kind == "gradient" else kind)
    return ", ".join(sorted(labels)) or "–"
