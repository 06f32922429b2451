"""``build_report(run_dir)``: figures/*.png and report.html from a run directory's CSVs and images.

Works on whatever the run left behind: a run stopped after one round, a leakage.csv holding only failed
rows, a missing rounds.csv or scenario.yaml. What is missing is said on the page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from fedleak.config.schema import Scenario
from fedleak.errors import UserError
from fedleak.fence import check_tree
from fedleak.metrics import SSIM_SETTINGS, ssim
from fedleak.metrics.reference import CANDIDATES
from fedleak.report.figures import batch_size_plot, client_attack_plot, training_plot
from fedleak.report.html import GridImage, ReportContent, esc, fmt, render
from fedleak.report.membership import MEMBERSHIP_FILE, membership_plot, read_membership, side_by_side
from fedleak.report.privacy import with_spend_at_end
from fedleak.report.sections import DP_UNITS, attack_table, client_table
from fedleak.report.tables import Row, read_leakage, read_rounds, summarize
from fedleak.report.tidy import write_images_table
from fedleak.report.timeline import timeline_plot
from fedleak.report.worst import ClientLeakage, client_leakage
from fedleak.report.writer import IMAGES_DIR, LEAKAGE_FILE, ROUNDS_FILE, SCENARIO_FILE, parse_image_name, safe_name
from fedleak.safe_yaml import YamlRefused, read_yaml

REPORT_FILE = "report.html"
FIGURES_DIR = "figures"
#: Grids beyond this many stay in images/ only, so the page stays a few MB at most.
MAX_GRIDS = 240
DEFAULT_SUCCESS_PSNR = 30.0


def build_report(run_dir: Path) -> Path:
    """Write ``figures/*.png`` and ``report.html`` into ``run_dir`` and return the page's path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory; pass the folder a 'fedleak simulate' run wrote")
    if not any((run_dir / name).exists() for name in (SCENARIO_FILE, LEAKAGE_FILE, ROUNDS_FILE)):
        raise UserError(f"{run_dir}: not a run directory (none of {SCENARIO_FILE}, {LEAKAGE_FILE}, {ROUNDS_FILE})")
    # Every file read or written below lies inside the run folder: refuse a link that would lead out of it.
    check_tree(run_dir)
    notes: list[str] = []
    scenario = _read_scenario(run_dir / SCENARIO_FILE, notes)
    leakage = read_leakage(run_dir / LEAKAGE_FILE)
    rounds = read_rounds(run_dir / ROUNDS_FILE)
    for name, table in ((LEAKAGE_FILE, leakage), (ROUNDS_FILE, rounds)):
        if not (run_dir / name).is_file():
            notes.append(f"{name} is missing: the run stopped before writing it.")
        if table.skipped:
            notes.append(f"{name}: {table.skipped} damaged row(s) skipped (an interrupted write).")
    if leakage.rows and all(r.get("status") != "ok" for r in leakage.rows):
        notes.append("Every attack attempt failed: the table lists the reasons.")

    # The machine-readable per-image table beside the page (fedleak.report.tidy).
    write_images_table(run_dir, leakage.rows)
    success_psnr = float(_get(scenario, "output", "success_psnr") or DEFAULT_SUCCESS_PSNR)
    clients = with_spend_at_end(client_leakage(leakage.rows), rounds.rows)  # ε: the spend at the end
    membership = read_membership(run_dir / MEMBERSHIP_FILE)
    order = [c.client for c in clients]
    grids, left_out = _grids(run_dir / IMAGES_DIR, leakage.rows)
    content = ReportContent(
        title=f"fedleak report — {_get(scenario, 'name') or run_dir.name}",
        run_dir=run_dir.resolve(),
        run_line=_run_line(scenario, clients),
        scenario_rows=_scenario_rows(scenario, leakage.rows, rounds.rows),
        client_rows=_client_rows(scenario, leakage.rows),
        attack_rows=_attack_rows(scenario),
        client_table=side_by_side(membership, clients) + client_table(clients, run_dir),
        attack_table=attack_table(summarize(leakage.rows), order, run_dir, "attacks_per_client.csv")
        if leakage.rows else "",
        figures=_figures(run_dir / FIGURES_DIR, leakage.rows, rounds.rows, clients) + _membership_figure(
            run_dir / FIGURES_DIR, rounds.rows, membership),
        grids=grids,
        notes=notes,
        metric_notes=metric_notes(success_psnr, leakage.rows),
        grids_left_out=left_out,
    )
    path = run_dir / REPORT_FILE
    path.write_text(render(content), encoding="utf-8")
    return path


def _figures(folder: Path, leakage: list[Row], rounds: list[Row],
             clients: list[ClientLeakage]) -> list[tuple[Path, str]]:
    """Leakage and accuracy per round, leakage per client and attack, per batch size (like clients only), training."""
    order = [c.client for c in clients]
    figures = [
        (timeline_plot(rounds, leakage, order, folder / "leakage_and_accuracy.png"),
         "Leakage and accuracy on one time axis: the global model's held-out accuracy per round (top); per client, "
         "the median over the update's images of the highest PSNR any attack reached (bottom; filled where the "
         "update leaks: above the mean-image baseline, or an image re-identified; the 10 worst clients)."),
        (client_attack_plot(leakage, clients, folder / "leakage_per_client.png"),
         "Leakage per client and attack: median per-image PSNR over the client's attacked rounds, the client's "
         "mean-image baseline as a black tick; worst clients first (at most 20)."),
    ]
    by_batch = batch_size_plot(leakage, folder / "leakage_vs_batch_size.png")
    if by_batch is not None:
        figures.append((by_batch, "Leakage vs batch size: median per-image PSNR, one line per attack, defense and "
                                  "training setting (clients pooled only where they did the same)."))
    figures.append((training_plot(rounds, folder / "training.png"),
                    "Training: accuracy and loss of the global model per round."))
    return figures


def _membership_figure(folder: Path, rounds: list[Row], membership: list[Row]) -> list[tuple[Path, str]]:
    """Membership AUC per client per round under the accuracy, when the run scored membership."""
    if not membership:
        return []
    return [(membership_plot(rounds, membership, folder / "membership_and_accuracy.png"),
             "Membership and accuracy on one time axis: the global model's held-out accuracy per round (top); per "
             "client, the AUC of the best membership attack on its update in each attacked round with its 95 % "
             "interval (bottom; chance is ½). Every client's update is scored, whatever its size.")]


def _run_line(raw: dict[str, Any], clients: list[ClientLeakage]) -> str:
    """One sentence: what ran (dataset, model, clients, rounds) and how many clients leaked."""
    data, training = _get(raw, "data") or {}, _get(raw, "training") or {}
    what = (f"{_get(raw, 'clients', 'count') or len(clients)} clients, {training.get('rounds', '?')} rounds of "
            f"{training.get('model', '?')} on {data.get('dataset', '?')}. ") if raw else ""
    attacked = [c for c in clients if c.images]
    leaking = sum(1 for c in attacked if not c.no_leakage)
    return what + (f"{leaking} of {len(attacked)} attacked clients leak (PSNR above the mean-image baseline, or "
                   "images re-identified).")


def gallery_note(rows: list[Row]) -> str:
    """Which gallery the rows' re-identification was asked in (each distinct one, with its size)."""
    galleries = sorted({(str(r["gallery"]), r.get("gallery_size")) for r in rows if r.get("gallery")})
    if not galleries:
        return "the run's dataset (the rows do not say which images)"
    return "; ".join(f"{esc(name)} ({size} images)" for name, size in galleries)


def metric_notes(success_psnr: float, rows: list[Row] | None = None) -> list[str]:
    """How to read the numbers (HTML fragments)."""
    return [
        "<b>PSNR</b> = 10·log<sub>10</sub>(1/MSE) on images in [0, 1] (peak 1, not 255), in dB; higher means "
        "closer to the true image, ∞ an exact copy.",
        f"<b>SSIM</b>: {ssim_setting()}",
        f"<b>Success rate</b>: share of attacked images with PSNR ≥ {success_psnr:g} dB; "
        "failed attempts count as zero.",
        "<b>Label accuracy</b>: share of the true images whose matched reconstruction carries the image's label "
        "(when the attack gives labels).",
        "<b>Baseline</b>: the PSNR the dataset's mean image (over every image of the run's data source) scores "
        "against each true image. A PSNR at or below it is shown as <i>no leakage</i>: the mean image needs no update.",
        "<b>Re-identified</b> (recall): share of attacked images that at least one of the attack's reconstructions "
        "re-identifies — its nearest image by SSIM, among a fixed gallery plus the update's own images, is the true "
        f"image (SSIM on the {CANDIDATES} nearest by MSE; failed attempts count as zero). The gallery: "
        f"{gallery_note(rows or [])}. leakage.csv also gives the precision (share of the reconstructions that "
        "re-identify some true image) and R, the number of images each attack returned: every one of them is scored, "
        "and with R above the batch size each true image keeps the median over all R.",
        *DP_UNITS.values(),
        "Batches are matched one-to-one (Hungarian matching) before scoring. Every PSNR shown is a median over all "
        "attacked true images, never a mean of dB: an image no attack reconstructed (or whose attempt failed) counts "
        "as not recovered (−∞), an even count takes the worse of the two middle images (so a median at or above a "
        "line means more than half the images are), and ∞ means every image was exact. Failures are listed with "
        "their reasons.",
    ]


def ssim_setting() -> str:
    """The SSIM setting, quoted from fedleak.metrics (one fixed setting for every score)."""
    settings = ", ".join(f"{key}={value}" for key, value in SSIM_SETTINGS.items())
    summary = (ssim.__doc__ or "").strip().split("\n\n")[0]
    summary = " ".join(summary.split()).replace(":data:`SSIM_SETTINGS`", settings)
    return summary or f"structural similarity with {settings}."


def _read_scenario(path: Path, notes: list[str]) -> dict[str, Any]:
    if not path.is_file():
        notes.append(f"{SCENARIO_FILE} is missing: the scenario summary is pieced together from the results.")
        return {}
    try:
        raw = read_yaml(path)
    except YamlRefused as exc:
        raise UserError(f"{path}: {exc}; this is not a scenario fedleak wrote") from None
    except yaml.YAMLError as exc:
        notes.append(f"{SCENARIO_FILE} could not be read ({exc.__class__.__name__}); summary from results only.")
        return {}
    return raw if isinstance(raw, dict) else {}


def _get(raw: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if not isinstance(raw, dict):
            return None
        raw = raw.get(key)
    return raw


def _distinct(rows: list[Row], key: str) -> str:
    values = sorted({r[key] for r in rows if r.get(key) is not None}, key=str)
    return ", ".join(str(v) for v in values) or "–"


def _scenario_rows(raw: dict[str, Any], leakage: list[Row], rounds: list[Row]) -> list[tuple[str, str]]:
    data, training, threat = _get(raw, "data") or {}, _get(raw, "training") or {}, _get(raw, "threat_model") or {}
    partition = _get(raw, "clients", "partition") or {}
    rows: list[tuple[str, str]] = []
    if raw:
        rows += [
            ("name / seed", f"{raw.get('name') or '–'} / {raw.get('seed', '–')}"),
            ("dataset", f"{data.get('dataset')} (source {data.get('source')}"
                        + (f", path {data['path']}" if data.get("path") else "")
                        + (f", split {data['split']}" if data.get("split") else "")
                        + (f", resized to {data['image_size']}" if data.get("image_size") else "") + ")"),
            ("model", f"{training.get('model')} (activation {training.get('activation') or 'paper default'}, "
                      f"init {training.get('init')})"),
            ("clients", f"{_get(raw, 'clients', 'count')} ({_partition(partition)} partition)"),
            ("rounds", str(training.get("rounds"))),
            ("update kind", f"{training.get('update')}"
                            + (f" ({training.get('local_steps')} local steps)" if training.get("update") ==
                               "local_steps" else " (one-batch gradient, FedSGD)")),
            ("threat model", ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in threat.items()) or "–"),
            ("success threshold", f"PSNR ≥ {fmt(_get(raw, 'output', 'success_psnr'), 1)} dB"),
        ]
    else:
        rows += [
            ("update kind", _distinct(leakage, "update_kind")),
            ("defense", _distinct(leakage, "defense")),
            ("threat model", ", ".join(f"{k}: {_distinct(leakage, k)}"
                                       for k in ("labels_known", "local_hparams_known", "batch_size_known"))),
        ]
    rows.append(("defense (from results)", _distinct(leakage, "defense")))
    rows.append(("rounds recorded", f"training {len(rounds)}, attacked {_distinct(leakage, 'round')}"))
    rows.append(("attack results", f"{len(leakage)} rows, {sum(r.get('status') == 'ok' for r in leakage)} ok"))
    return rows


def _partition(partition: dict[str, Any]) -> str:
    """'dirichlet (alpha 0.5)' from {'kind': 'dirichlet', 'alpha': 0.5}."""
    settings = ", ".join(f"{k} {v}" for k, v in partition.items() if k != "kind")
    return f"{partition.get('kind', 'iid')}" + (f" ({settings})" if settings else "")


def _client_rows(raw: dict[str, Any], leakage: list[Row]) -> list[dict[str, Any]]:
    """Per client: batch size, local steps, lr (scenario with overrides, else what the results say)."""
    try:
        scenario = Scenario.model_validate(raw)
    except Exception:  # noqa: BLE001 — an old or partial scenario.yaml still gets a report
        scenario = None
    if scenario is not None:
        rows = []
        for client in range(scenario.clients.count):
            batch_size, steps, lr = scenario.client_settings(client)
            rows.append({"client": client, "batch size": batch_size, "local steps": steps, "lr": lr})
        return rows
    seen: dict[int, dict[str, Any]] = {}
    for r in leakage:
        if r.get("client") is not None:
            seen.setdefault(r["client"], {"client": r["client"], "batch size": r.get("batch_size"),
                                          "local steps": r.get("local_steps"), "lr": r.get("lr")})
    return [seen[c] for c in sorted(seen)]


def _attack_rows(raw: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for attack in _get(raw, "attacks") or []:
        params = attack.get("params") or {}
        rows.append({
            "attack": attack.get("name"),
            "parameters": ", ".join(f"{k}={v}" for k, v in params.items()) or "defaults",
            "rounds": attack.get("rounds", "all"),
            "clients": attack.get("clients", "all"),
        })
    return rows


def _grids(images_dir: Path, leakage: list[Row]) -> tuple[list[GridImage], int]:
    """Grids grouped by attack then client, in round order, captioned with their scores."""
    if not images_dir.is_dir():
        return [], 0
    scores = {(r.get("round"), r.get("client"), safe_name(str(r.get("attack")))): r for r in leakage}
    found = []
    for path in images_dir.glob("*.png"):
        key = parse_image_name(path.name)
        if key is not None:
            found.append((key[2], key[1], key[0], path))
    found.sort()
    grids = []
    for attack, client, round_, path in found[:MAX_GRIDS]:
        row = scores.get((round_, client, attack))
        caption = f"round {round_}"
        if row is not None and row.get("status") == "ok":
            caption += ": " + _grid_score(row)
        elif row is not None:
            caption += f": failed ({row.get('reason') or 'no reason given'})"
        grids.append(GridImage(path=path, caption=caption, group=f"{attack} — client {client}"))
    return grids, max(0, len(found) - MAX_GRIDS)


def _grid_score(row: Row) -> str:
    """A grid's caption: PSNR and SSIM, or "no leakage" at or below the baseline; the re-identified share."""
    psnr, baseline = row.get("psnr"), row.get("baseline_psnr")
    if psnr is not None and baseline is not None and psnr <= baseline:
        text = f"no leakage (PSNR {fmt(psnr)} ≤ baseline {fmt(baseline)} dB)"
    else:
        text = f"PSNR {fmt(psnr)} dB, SSIM {fmt(row.get('ssim'), 3)}"
    if row.get("reidentified") is not None:
        text += f", re-identified {fmt(100 * row['reidentified'], 0)} %"
    return text
