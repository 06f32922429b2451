"""Outputs of ``fedleak attack`` (one attack on one victim batch): reconstruction.png (target, reconstruction and loss
curve side by side, :mod:`fedleak.report.side_by_side`), target.png, recon.png, history.png, metrics.json.

metrics.json holds the batch's headline (psnr, ssim, mse: medians over every true image, an image not recovered
counting as −∞, see fedleak.metrics.headline; label_accuracy, success), seconds, status, reason, a per-image list
after one-to-one matching, what history.png shows, and the settings of the run. JSON has no infinity: an exact
reconstruction's PSNR is written as the string ``"inf"``, a median image not recovered as ``"-inf"``.

history.png is DLG's figure (Zhu et al. 2019, arXiv 1906.08935, Fig. 3): the snapshots an iterative attack kept, in
reading order, ten per row, the iteration under each (one row of cells per image of the batch). An analytic attack
has no iterations: its figure lists what it solved layer by layer (from its ``layers`` diagnostics), or says in one
line that it has no history.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fedleak.report.images import grid, save_png, to_hwc
from fedleak.report.side_by_side import write_side_by_side
from fedleak.scoring import batch_score, lined_up_images
from fedleak.types import Reconstruction

METRIC_KEYS = ("psnr", "ssim", "mse", "label_accuracy", "success", "baseline_psnr", "reidentified",
               "reidentified_precision", "reconstructions", "gallery", "gallery_size")
#: Diagnostics tensors larger than this are described by their shape instead of listed.
MAX_LISTED = 256
#: history.png: snapshots per row, and at most this many drawn (spread evenly, first and last kept).
HISTORY_COLUMNS = 10
HISTORY_SHOWN = 40


def write_single_attack(
    out: Path,
    recon: Reconstruction,
    true_images: torch.Tensor,
    true_labels: torch.Tensor,
    success_psnr: float,
    context: dict[str, Any],
    reference=None,
) -> str:
    """Score the reconstruction, write the four files into ``out`` and return a one-line summary.

    ``reference`` (the dataset's :class:`~fedleak.metrics.reference.ReferenceSet`) adds baseline_psnr and the
    re-identification recall (reidentified) and precision in its fixed gallery (gallery, gallery_size).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, Any] = {key: None for key in METRIC_KEYS}
    metrics |= {"status": recon.status, "reason": recon.reason, "seconds": recon.seconds, "per_image": []}
    lined_up = None
    order: list[int] | None = None
    if recon.status == "ok":
        try:
            score = batch_score(recon, true_images, true_labels, success_psnr, reference)
        except Exception as exc:  # noqa: BLE001 — an unscorable answer is a result, not a crash
            metrics |= {"status": "failed", "reason": f"unscorable reconstruction: {type(exc).__name__}: {exc}"}
        else:
            scored = score.to_dict()
            metrics |= {key: scored[key] for key in METRIC_KEYS} | {
                "rates": scored["rates"], "per_image": scored["per_image"]}
            lined_up = lined_up_images(score, recon.images, true_images)
            order = [item.recon_index for item in score.per_image if item.recon_index is not None]
    metrics["success_psnr"] = success_psnr
    metrics["true_labels"] = true_labels.tolist()
    metrics["recovered_labels"] = None if recon.labels is None else recon.labels.tolist()

    target, answer = grid([true_images]), grid([lined_up if lined_up is not None else true_images * 0 + 0.5])
    save_png(target, out / "target.png")
    save_png(answer, out / "recon.png")
    write_side_by_side(out / "reconstruction.png", target, answer, recon.diagnostics,
                       f"{context.get('attack', 'attack')}: {_summary_line(metrics)}")
    iterations = list(recon.diagnostics.get("history_iterations") or range(len(recon.history)))
    note = write_history(out / "history.png", history_in_true_order(recon, order), iterations,
                         str(context.get("attack", "this attack")), recon.diagnostics)
    metrics["history"] = {"snapshots": len(recon.history), "iterations": iterations[:len(recon.history)],
                          "file": "history.png", "note": note}
    metrics["diagnostics"] = _json_safe(recon.diagnostics)
    metrics["settings"] = _json_safe(context)
    (out / "metrics.json").write_text(json.dumps(_json_safe(metrics), indent=2, allow_nan=False) + "\n")
    return _summary(out, metrics)


def history_in_true_order(recon: Reconstruction, order: list[int] | None) -> list[torch.Tensor]:
    """History snapshots with rows reordered by the final matching (``order[i]``: recon index for true image i).

    Row i of history.png then shows how the image scored against true image i was approached. Without a
    matching (failed or unscorable), or when snapshot sizes differ from the answer, the order is kept.
    """
    size = None if recon.images is None else len(recon.images)
    if not order or any(len(snapshot) != size for snapshot in recon.history):
        return list(recon.history)
    return [snapshot[order] for snapshot in recon.history]


def write_history(path: Path, snapshots: list[torch.Tensor], iterations: list[int], attack: str,
                  diagnostics: dict[str, Any]) -> str:
    """Draw history.png and return the one line metrics.json keeps about it."""
    if snapshots:
        shown = _spread(len(snapshots), HISTORY_SHOWN)
        title = f"{attack}: {len(snapshots)} snapshots" + (f", {len(shown)} shown" if len(shown) < len(snapshots)
                                                           else "") + " (it. = optimiser iterations)"
        _snapshot_grid([snapshots[i] for i in shown], [iterations[i] for i in shown], path, title)
        return f"{len(snapshots)} snapshots at iterations {iterations[0]}–{iterations[-1]}; rows: images of the batch"
    layers = diagnostics.get("layers")
    if isinstance(layers, list) and layers and all(isinstance(item, dict) for item in layers):
        lines = [f"{attack} solves layer by layer (no iterations); what each layer solved:"]
        lines += [_layer_line(item) for item in layers]
    elif "history_iterations" in diagnostics:
        lines = [f"{attack} kept no snapshots (snapshot_every=0, or the attack failed before its first)"]
    else:
        lines = [f"{attack} is solved in closed form: it has no optimisation history"]
    figure = Figure(figsize=(7.5, 0.4 + 0.25 * len(lines)), dpi=110)
    FigureCanvasAgg(figure)
    figure.text(0.02, 0.95, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return lines[0] if len(lines) == 1 else f"{lines[0]} {len(lines) - 1} layers listed"


def _layer_line(item: dict[str, Any]) -> str:
    rank = "?" if item.get("rank") is None else item["rank"]
    residual = item.get("residual")
    shown = "" if not isinstance(residual, int | float) else f", residual {residual:.1e}"
    return f"  {item.get('layer', '?')}: {item.get('method', '?')}, rank {rank} of {item.get('unknowns', '?')}{shown}"


def _snapshot_grid(snapshots: list[torch.Tensor], iterations: list[int], path: Path, title: str) -> None:
    """Snapshots in reading order, HISTORY_COLUMNS per band; each band has one row per image, labelled below."""
    arrays = [to_hwc(s) for s in snapshots]
    batch = max(len(a) for a in arrays)
    columns = min(HISTORY_COLUMNS, len(arrays))
    bands = -(-len(arrays) // columns)
    figure = Figure(figsize=(1.1 * columns + 0.3, (1.1 * batch + 0.25) * bands + 0.4), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    cells = figure.subplots(bands * batch, columns, squeeze=False)
    for axes in cells.flat:
        axes.set_axis_off()
    for index, array in enumerate(arrays):
        band, column = divmod(index, columns)
        for row in range(len(array)):
            axes = cells[band * batch + row][column]
            axes.imshow(array[row], interpolation="nearest", vmin=0, vmax=1)
            if row == len(array) - 1:
                # Axis off hides labels, so the iteration is written as text under the image (DLG's "Iters=10").
                axes.text(0.5, -0.04, f"it. {iterations[index]}", transform=axes.transAxes, ha="center", va="top",
                          fontsize=7)
    figure.suptitle(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")


def _spread(count: int, limit: int) -> list[int]:
    """At most ``limit`` indices spread evenly over range(count), first and last included."""
    if count <= limit:
        return list(range(count))
    return sorted({round(i * (count - 1) / (limit - 1)) for i in range(limit)})


def _summary_line(metrics: dict[str, Any]) -> str:
    """The figure's title: the batch's median PSNR, or why there is no reconstruction."""
    if metrics["status"] != "ok":
        return f"{metrics['status']}: {str(metrics['reason'])[:80]}"
    psnr = metrics.get("psnr")
    return "PSNR –" if psnr is None else f"median PSNR {psnr if isinstance(psnr, str) else f'{psnr:.2f}'} dB"


def _summary(out: Path, metrics: dict[str, Any]) -> str:
    if metrics["status"] != "ok":
        return f"failed: {metrics['reason']} (wrote {out})"

    def show(key: str, digits: int) -> str:
        value = metrics.get(key)
        return "–" if value is None else (value if isinstance(value, str) else f"{value:.{digits}f}")

    return (f"PSNR {show('psnr', 2)} dB, SSIM {show('ssim', 3)}, MSE {show('mse', 5)}, label accuracy "
            f"{show('label_accuracy', 2)}, success {show('success', 2)} in {metrics['seconds']:.1f} s (wrote {out})")


def _json_safe(value: Any) -> Any:
    """Tensors → lists/numbers, non-finite floats → strings, unknown objects → their repr."""
    if isinstance(value, torch.Tensor):
        if value.numel() > MAX_LISTED:
            return f"tensor of shape {tuple(value.shape)}"
        value = value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if hasattr(value, "item"):
        return _json_safe(value.item())
    return repr(value)
