"""Outputs of ``fedleak attack`` (one attack on one victim batch): target.png, recon.png, history.png, metrics.json.

metrics.json holds the batch means (psnr, ssim, mse, label_accuracy, success), seconds, status, reason,
a per-image list after one-to-one matching, what history.png shows, and the settings of the run. JSON has
no infinity: an exact reconstruction's PSNR is written as the string ``"inf"``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from fedleak.report.figures import history_plot
from fedleak.report.images import grid, save_png
from fedleak.scoring import batch_score, matched_images
from fedleak.types import Reconstruction

METRIC_KEYS = ("psnr", "ssim", "mse", "label_accuracy", "success")
#: Diagnostics tensors larger than this are described by their shape instead of listed.
MAX_LISTED = 256


def write_single_attack(
    out: Path,
    recon: Reconstruction,
    true_images: torch.Tensor,
    true_labels: torch.Tensor,
    success_psnr: float,
    context: dict[str, Any],
) -> str:
    """Score the reconstruction, write the four files into ``out`` and return a one-line summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, Any] = {key: None for key in METRIC_KEYS}
    metrics |= {"status": recon.status, "reason": recon.reason, "seconds": recon.seconds, "per_image": []}
    lined_up = None
    order: list[int] | None = None
    if recon.status == "ok":
        try:
            score = batch_score(recon, true_images, true_labels, success_psnr)
        except (ValueError, RuntimeError) as exc:
            metrics |= {"status": "failed", "reason": f"unscorable reconstruction: {exc}"}
        else:
            scored = score.to_dict()
            metrics |= {key: scored[key] for key in METRIC_KEYS} | {
                "rates": scored["rates"], "per_image": scored["per_image"]}
            lined_up = matched_images(recon.images, true_images)
            order = [item.recon_index for item in score.per_image if item.recon_index is not None]
    metrics["success_psnr"] = success_psnr
    metrics["true_labels"] = true_labels.tolist()
    metrics["recovered_labels"] = None if recon.labels is None else recon.labels.tolist()

    save_png(grid([true_images]), out / "target.png")
    save_png(grid([lined_up]) if lined_up is not None else grid([true_images * 0 + 0.5]), out / "recon.png")
    note = "" if recon.history else f"{context.get('attack', 'this attack')} records no optimisation history"
    history_plot(history_in_true_order(recon, order), out / "history.png", note=note)
    metrics["history"] = {"snapshots": len(recon.history), "file": "history.png",
                          "note": note or "columns: snapshots in order; rows: images of the batch"}
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
