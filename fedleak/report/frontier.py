"""The privacy–utility frontier of a defense comparison, computed from each arm's own CSVs.

A run with arms has this layout (fedleak.drivers.arms)::

    run_dir/
      scenario.yaml        the scenario with its arms
      arms/<name>/         one ordinary run directory per arm (leakage.csv, rounds.csv, report.html, …)
      frontier.csv         one row per arm (FRONTIER_COLUMNS), rebuilt from the arms' CSVs
      frontier.png, figures/, report.html

Worst case per attacked image: the highest PSNR any attack reached on that image of that update (same round and
client). An arm's figure is the median over all its attacked images by :mod:`fedleak.metrics.headline`'s rule (an
image no attack reconstructed counts as not recovered, −∞; ∞ only when every image is exact). Nothing here is stored
anywhere else: every number is derived from leakage.csv and rounds.csv.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fedleak.defaults import DEFAULT_SUCCESS_PSNR
from fedleak.errors import UserError
from fedleak.metrics.headline import median_psnr
from fedleak.report.audit import AUDIT_FILE, arm_audit, read_audit
from fedleak.report.bounds import arm_bounds, strongest_rates, worst_client
from fedleak.report.membership import MEMBERSHIP_FILE, arm_membership, read_membership
from fedleak.report.privacy import arm_spend
from fedleak.report.tables import Row, is_number, read_leakage, read_rounds
from fedleak.report.worst import worst_images
from fedleak.report.writer import LEAKAGE_FILE, ROUNDS_FILE, SCENARIO_FILE
from fedleak.safe_yaml import YamlRefused, read_yaml

ARMS_DIR = "arms"
FRONTIER_FILE = "frontier.csv"
FRONTIER_COLUMNS = ["arm", "defense", "final_accuracy", "worst_median_psnr", "success_rate", "dp_epsilon", "dp_unit",
                    "membership_auc", "membership_tpr_at_1pct_fpr", "rero_bound", "reidentified_rate", "rero_violated",
                    "audit_epsilon_lower"]


@dataclass
class ArmResult:
    """One arm's frontier row plus the per-round curves the top-level page draws."""

    arm: str
    defense: str
    final_accuracy: float | None
    worst_median_psnr: float | None
    success_rate: float | None
    dp_epsilon: float | None
    dp_unit: str
    #: The arm's worst client: the highest membership AUC, and the highest TPR at 1 % FPR, over its clients, attacked
    #: rounds and membership attacks (membership.csv; empty without membership).
    membership_auc: float | None = None
    membership_tpr_at_1pct_fpr: float | None = None
    #: The arm's worst client: the largest empirical lower bound on ε at 95 % of the one-run canary audit
    #: (audit.csv; empty without audit), beside dp_epsilon, the accountant's claim.
    audit_epsilon_lower: float | None = None
    attacked_images: int = 0
    skipped_attacks: int = 0
    #: Rounds in rounds.csv, and training.rounds of the arm's scenario (None when it cannot be read).
    rounds_recorded: int = 0
    rounds_planned: int | None = None
    success_psnr: float = DEFAULT_SUCCESS_PSNR
    accuracy_per_round: list[tuple[int, float]] = field(default_factory=list)
    leakage_per_round: list[tuple[int, float]] = field(default_factory=list)
    #: Worst client (highest share its strongest attack re-identified): that share, and its ReRo bound under the
    #: arm's DP defense (None without DP); rero_violated: some client's rate lies above its bound beyond chance
    #: (an implementation error). See fedleak.report.bounds.
    reidentified_rate: float | None = None
    rero_bound: float | None = None
    rero_violated: bool | None = None

    def row(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in FRONTIER_COLUMNS}


def worst_case(rows: list[Row]) -> dict[tuple[Any, Any], list[float | None]]:
    """Per attacked update (round, client): per true image, the highest PSNR over the attacks on that update (None:
    no attack reconstructed it), as the single-run report computes it (:func:`fedleak.report.worst.worst_images`)."""
    worst: dict[tuple[Any, Any], list[float | None]] = defaultdict(list)
    for image in worst_images(rows):
        worst[(image.round, image.client)].append(image.psnr)
    return dict(worst)


def leakage_numbers(rows: list[Row], success_psnr: float) -> tuple[float | None, float | None, int]:
    """(median worst-case PSNR over all attacked images, an image no attack reconstructed counting as not recovered;
    share of all attacked images at or above ``success_psnr``; number of attacked images)."""
    images = [v for values in worst_case(rows).values() for v in values]
    rate = sum(v is not None and v >= success_psnr for v in images) / len(images) if images else None
    return median_psnr(images), rate, len(images)


def leakage_per_round(rows: list[Row]) -> list[tuple[int, float]]:
    """(round, median worst-case PSNR over that round's attacked images, −∞ where its median image was not
    recovered), rounds in order."""
    by_round: dict[int, list[float | None]] = defaultdict(list)
    for (round_, _), values in worst_case(rows).items():
        if is_number(round_):
            by_round[int(round_)].extend(values)
    return [(r, median_psnr(v)) for r, v in sorted(by_round.items()) if v]


def accuracy_per_round(rows: list[Row]) -> list[tuple[int, float]]:
    """(round, held-out accuracy of the global model) for the rounds that were evaluated."""
    return sorted((int(r["round"]), float(r["accuracy"])) for r in rows
                  if is_number(r.get("round")) and is_number(r.get("accuracy")))


def final_accuracy(rows: list[Row]) -> float | None:
    """Accuracy in the last round rounds.csv records (None when that round was not evaluated)."""
    rounds = [r for r in rows if is_number(r.get("round"))]
    if not rounds:
        return None
    last = max(rounds, key=lambda r: r["round"])
    return float(last["accuracy"]) if is_number(last.get("accuracy")) else None


def read_arm(arm_dir: Path) -> ArmResult:
    """The frontier row and curves of one arm's run directory."""
    scenario = _read_yaml(arm_dir / SCENARIO_FILE)
    leakage = read_leakage(arm_dir / LEAKAGE_FILE).rows
    rounds = read_rounds(arm_dir / ROUNDS_FILE).rows
    success_psnr = float((scenario.get("output") or {}).get("success_psnr") or DEFAULT_SUCCESS_PSNR)
    median, rate, images = leakage_numbers(leakage, success_psnr)
    epsilon, unit = arm_spend(rounds, leakage)  # the largest over its clients after the last round
    auc, tpr = arm_membership(read_membership(arm_dir / MEMBERSHIP_FILE))
    return ArmResult(arm=arm_dir.name, defense=_defense(scenario, leakage), final_accuracy=final_accuracy(rounds),
                     worst_median_psnr=median, success_rate=rate, dp_epsilon=epsilon, dp_unit=unit,
                     membership_auc=auc, membership_tpr_at_1pct_fpr=tpr,
                     audit_epsilon_lower=arm_audit(read_audit(arm_dir / AUDIT_FILE)),
                     attacked_images=images, success_psnr=success_psnr,
                     skipped_attacks=sum(r.get("status") == "skipped" for r in leakage),
                     rounds_recorded=len({r["round"] for r in rounds if is_number(r.get("round"))}),
                     rounds_planned=(scenario.get("training") or {}).get("rounds"),
                     accuracy_per_round=accuracy_per_round(rounds), leakage_per_round=leakage_per_round(leakage),
                     **bound_columns(scenario, leakage))


def bound_columns(scenario: dict[str, Any], leakage: list[Row]) -> dict[str, Any]:
    """reidentified_rate, rero_bound and rero_violated of one arm (fedleak.report.bounds)."""
    rates = strongest_rates(leakage)
    columns: dict[str, Any] = {"reidentified_rate": max((r for r, _, _ in rates.values()), default=None)}
    if not scenario:
        return columns
    bounds = arm_bounds(scenario, leakage)
    worst = worst_client(bounds)
    if worst is not None:
        columns.update(reidentified_rate=worst.reidentified_rate, rero_bound=worst.rero_bound,
                       rero_violated=any(b.violated for b in bounds))
    return columns


def _defense(scenario: dict[str, Any], leakage: list[Row]) -> str:
    """The arm's defense as result rows name it: from its scenario, else from the rows."""
    defense = (scenario.get("training") or {}).get("defense")
    if isinstance(defense, dict):
        try:
            # lazy (start-up): the defenses bring torch, which a report that names no defense does not need
            from fedleak.defenses.base import defense_from

            return defense_from(defense).label()
        except Exception:  # noqa: BLE001 — an old scenario.yaml still gets a frontier row
            pass
    return ", ".join(sorted({str(r.get("defense") or "none") for r in leakage})) or "–"


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = read_yaml(path) if path.is_file() else None
    except YamlRefused as exc:
        raise UserError(f"{path}: {exc}; this is not a scenario fedleak wrote") from None
    except yaml.YAMLError:
        raw = None
    return raw if isinstance(raw, dict) else {}


def arm_names(run_dir: Path) -> list[str]:
    """The arms with a run directory: in the scenario's order, then any other folder under arms/."""
    listed = [a.get("name") for a in _read_yaml(run_dir / SCENARIO_FILE).get("arms") or [] if isinstance(a, dict)]
    present = {p.name for p in (run_dir / ARMS_DIR).iterdir() if p.is_dir()} if (run_dir / ARMS_DIR).is_dir() else set()
    ordered = [name for name in listed if name in present]
    return ordered + sorted(present - set(ordered))


def missing_arms(run_dir: Path) -> list[str]:
    """Arms the scenario lists that have no run directory (the run stopped before them)."""
    listed = [a.get("name") for a in _read_yaml(run_dir / SCENARIO_FILE).get("arms") or [] if isinstance(a, dict)]
    return [str(name) for name in listed if not (run_dir / ARMS_DIR / str(name)).is_dir()]


def is_arms_run(run_dir: Path) -> bool:
    return (Path(run_dir) / ARMS_DIR).is_dir()


def write_frontier(path: Path, arms: list[ArmResult]) -> Path:
    """frontier.csv: one row per arm, empty cells where a number is missing."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FRONTIER_COLUMNS)
        writer.writeheader()
        for arm in arms:
            writer.writerow({k: _cell(v) for k, v in arm.row().items()})
    return path


def _cell(value: Any) -> Any:
    """Empty for a missing number; floats to 6 significant digits (accuracies are shares of a few hundred images)."""
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else value
