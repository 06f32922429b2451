"""Machine-readable tables beside the human ones: ``images.csv``, one row per true image per attack, in long format.

``leakage.csv`` keeps one row per attack on an update with the per-image facts as space-separated strings;
``images.csv`` spreads those facts out: one row per (run, arm, round, client, attack, image) with every per-image
score the scorer recorded, the row's setting beside it, snake_case columns and an empty cell for a missing value.
pandas, R or a spreadsheet read it without parsing.

The per-image facts are the scorer's (fedleak.scoring): ``image`` is the true image's position in the client's batch;
``psnr`` and ``mse`` its reconstruction's after the one-to-one matching (``recovered`` false and both empty when no
reconstruction was paired with it — it counts as not recovered in every median); ``baseline_psnr`` what the
dataset's mean image scores against it; ``reidentified`` whether some reconstruction re-identified it in the
stated gallery. MSE is derived from the PSNR (peak 1: MSE = 10^(−PSNR/10)), so both are exact. Per-image SSIM is
not recorded by the scorer, so it is not here (the row's median SSIM is in leakage.csv). A failed or skipped attack
has one row with an empty ``image`` and its reason: its images were not reconstructed.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fedleak.fence import inside
from fedleak.report.tables import read_leakage

IMAGES_FILE = "images.csv"

#: Facts of the attack's row repeated on each of its images (leakage.csv's names).
ROW_FACTS = ["status", "reason", "batch_size", "reconstructions", "update_kind", "local_steps", "local_epochs", "lr",
             "defense", "dp_epsilon", "dp_delta", "dp_unit", "labels_known", "local_hparams_known",
             "batch_size_known", "gallery", "gallery_size", "seconds"]
IMAGE_COLUMNS = ["run", "arm", "round", "client", "attack", "image", "recovered", "psnr", "mse", "baseline_psnr",
                 "reidentified", *ROW_FACTS]


def _numbers(text: str) -> list[float | None]:
    """``"6.340 inf -"`` → ``[6.34, inf, None]`` (``-``: not recovered / not computed)."""
    return [None if token == "-" else float(token) for token in (text or "").split()]


def _flags(text: str) -> list[bool | None]:
    return [None if token == "-" else token == "1" for token in (text or "").split()]


def _mse(psnr: float | None) -> float | None:
    if psnr is None:
        return None
    return 10.0 ** (-psnr / 10.0)


def image_rows(leakage: Iterable[dict[str, Any]], run: str, arm: str = "") -> list[dict[str, Any]]:
    """The long-format rows of ``leakage`` (leakage.csv's rows, typed as :func:`read_leakage` reads them)."""
    rows = []
    for row in leakage:
        key = {"run": run, "arm": arm, "round": row.get("round"), "client": row.get("client"),
               "attack": row.get("attack")}
        facts = {name: row.get(name) for name in ROW_FACTS}
        psnrs = _numbers(row.get("psnr_per_image") or "")
        if row.get("status") != "ok" or not psnrs:
            rows.append({**key, "image": None, "recovered": None, "psnr": None, "mse": None, "baseline_psnr": None,
                         "reidentified": None, **facts})
            continue
        baselines = _numbers(row.get("baseline_psnr_per_image") or "") or [None] * len(psnrs)
        flags = _flags(row.get("reidentified_per_image") or "") or [None] * len(psnrs)
        for image, (psnr, baseline, flag) in enumerate(zip(psnrs, baselines, flags, strict=True)):
            rows.append({**key, "image": image, "recovered": psnr is not None, "psnr": psnr, "mse": _mse(psnr),
                         "baseline_psnr": baseline, "reidentified": flag, **facts})
    return rows


def cell(value: Any) -> Any:
    """A CSV cell: empty for a missing value, lower-case true/false, numbers as Python writes them."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def run_and_arm(run_dir: Path) -> tuple[str, str]:
    """``(run, arm)`` names of a run directory: an arm's folder is ``<run>/arms/<arm>``; a single run has no arm."""
    run_dir = Path(run_dir).resolve()
    if run_dir.parent.name == "arms":
        return run_dir.parent.parent.name, run_dir.name
    return run_dir.name, ""


def write_arms_images_table(run_dir: Path, arm_dirs: list[Path]) -> Path:
    """The top of a run with arms: every arm's per-image rows in one ``images.csv`` (its ``arm`` column says whose)."""
    rows = []
    for arm_dir in arm_dirs:
        if (arm_dir / "leakage.csv").is_file():
            rows += image_rows(read_leakage(arm_dir / "leakage.csv").rows, *run_and_arm(arm_dir))
    return _write(inside(Path(run_dir), IMAGES_FILE), rows)


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    # Checked by fedleak.fence: a link planted in the run folder never redirects this write.
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=IMAGE_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: cell(v) for k, v in row.items()})
    return path


def write_images_table(run_dir: Path, leakage: list[dict[str, Any]] | None = None) -> Path:
    """Write ``run_dir/images.csv`` from ``leakage`` (default: the folder's leakage.csv); a header alone when there
    are no rows yet."""
    run_dir = Path(run_dir)
    if leakage is None:
        leakage = read_leakage(run_dir / "leakage.csv").rows if (run_dir / "leakage.csv").is_file() else []
    return _write(inside(run_dir, IMAGES_FILE), image_rows(leakage, *run_and_arm(run_dir)))
