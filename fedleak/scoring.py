"""The scorer: joins a reconstruction with the client's true batch and turns it into one result row.

This is the scoring entry point, the only place ground truth meets an attack's output. Attacks never see it; the
server looks the true batch up from the update's audit indices and calls :func:`score_reconstruction` with it and
the update's :class:`~fedleak.types.ScoringContext`, together with the run's whole dataset (a
:class:`~fedleak.metrics.reference.ReferenceSet`) for the mean-image baseline and re-identification. The metrics
themselves live in :mod:`fedleak.metrics.score`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from fedleak.metrics import score_batch
from fedleak.types import LeakageRecord, Reconstruction, ScoringContext, ThreatModel

if TYPE_CHECKING:  # the metrics (scikit-image, scipy) load only when something is scored
    from fedleak.metrics.reference import ReferenceSet


@dataclass(frozen=True)
class Scored:
    """One scored reconstruction: its result row, and its images lined up with the true batch by the same one-to-one
    matching that scored them (None when nothing was scored)."""

    record: LeakageRecord
    lined_up: torch.Tensor | None


def score_reconstruction(
    recon: Reconstruction,
    true_images: torch.Tensor,
    true_labels: torch.Tensor,
    context: ScoringContext,
    *,
    attack: str,
    threat: ThreatModel,
    success_psnr: float,
    reference: ReferenceSet | None = None,
) -> Scored:
    """Score one attack on one client's update in one round.

    A failed reconstruction gives a row with status ``failed``, its reason and empty metrics. So does a
    reconstruction that cannot be scored (e.g. a shape that does not match the true batch): the reason
    says why, and the run goes on. This is the one place such errors are caught.

    Args:
        recon: What the attack returned.
        true_images: The client's batch, B×C×H×W in [0, 1].
        true_labels: Its labels, B class indices.
        context: where the update came from, how the client trained, what protected it (and its ε so far).
        attack: which attack ran.
        threat: The grants the attack ran under (written into the row).
        success_psnr: PSNR (dB) at or above which an image counts as reconstructed.
        reference: every image of the run's data source (baseline PSNR, re-identification); None leaves both empty.
    """
    fields = row_fields(context, attack, recon.seconds, threat)
    if recon.status != "ok":
        # "skipped" (e.g. an update over more images than the attack's cap) stays apart from a real failure.
        return Scored(_failed(fields, recon.reason or "attack reported failure without a reason", recon.status), None)
    try:
        score = batch_score(recon, true_images, true_labels, success_psnr, reference)
    except Exception as exc:  # noqa: BLE001 — e.g. a batch of the wrong shape: a result, not a dead run
        return Scored(_failed(fields, f"unscorable reconstruction: {type(exc).__name__}: {exc}"), None)
    return Scored(_scored(score, fields), lined_up_images(score, recon.images, true_images))


def row_fields(context: ScoringContext, attack: str, seconds: float, threat: ThreatModel) -> dict[str, Any]:
    """The columns of a result row that do not depend on the score."""
    return dict(
        round=int(context.round), client=int(context.client), attack=attack, batch_size=int(context.batch_size),
        local_steps=int(context.local_steps), lr=float(context.lr), update_kind=context.update_kind,
        defense=context.defense, seconds=float(seconds), labels_known=threat.labels_known,
        local_hparams_known=threat.local_hparams_known, batch_size_known=threat.batch_size_known,
        dp_epsilon=context.dp_epsilon, dp_delta=context.dp_delta, dp_unit=context.dp_unit or "",
        local_epochs=None if context.local_epochs is None else int(context.local_epochs),
    )


def _scored(score: Any, fields: dict[str, Any]) -> LeakageRecord:
    """The row of a scored reconstruction: batch medians plus the per-image facts, in the true batch's order."""
    per_image = score.per_image
    return LeakageRecord(
        status="ok", reason="", psnr=_number(score.psnr), ssim=_number(score.ssim), mse=_number(score.mse),
        label_accuracy=_number(score.label_accuracy), success=_number(score.success),
        psnr_per_image=" ".join(_format(v) for v in per_image_psnr(score)),
        baseline_psnr=_number(score.baseline_psnr),
        baseline_psnr_per_image="" if score.baseline_psnr is None else " ".join(
            _format(item.baseline_psnr) for item in per_image),
        reidentified=_number(score.reidentified),
        reidentified_per_image="" if score.reidentified is None else " ".join(
            _flag(item.reidentified) for item in per_image),
        reidentified_precision=_number(score.reidentified_precision), gallery=score.gallery or "",
        gallery_size=score.gallery_size, reconstructions=int(score.reconstructions),
        **fields,
    )


def batch_score(recon: Reconstruction, true_images: torch.Tensor, true_labels: torch.Tensor, success_psnr: float,
                reference: ReferenceSet | None = None):
    """fedleak.metrics.score_batch on a reconstruction (images/labels may be None); with ``reference`` (the run's
    dataset) the score carries ``baseline_psnr`` and ``reidentified``."""
    return score_batch(recon.images, recon.labels, true_images, true_labels, success_psnr=success_psnr,
                       reference=reference)


def per_image_psnr(score: Any) -> list[float | None]:
    """PSNR of each true image after one-to-one matching, in the true batch's order (None: unmatched)."""
    return [None if item.psnr is None else float(item.psnr) for item in score.per_image]


def lined_up_images(score: Any, recon_images: torch.Tensor | None, true_images: torch.Tensor) -> torch.Tensor | None:
    """The reconstruction reordered to line up with the true batch by the score's own matching (no second matching).

    True images with no paired reconstruction get a mid-grey placeholder: those nobody reconstructed, and all of them
    when the attack returned more images than the batch holds (R > B: no pairing). None when there is nothing to show.
    """
    if recon_images is None or len(recon_images) == 0:
        return None
    recon = recon_images.detach().cpu().float().clamp(0, 1)
    lined_up = torch.full_like(true_images.detach().cpu().float(), 0.5)
    for item in score.per_image:
        if item.recon_index is not None:
            lined_up[item.true_index] = recon[item.recon_index]
    return lined_up


def _failed(fields: dict[str, Any], reason: str, status: str = "failed") -> LeakageRecord:
    return LeakageRecord(status=status, reason=reason, psnr=None, ssim=None, mse=None, label_accuracy=None,
                         success=None, **fields)


def _number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _flag(value: bool | None) -> str:
    """One per-image re-identification cell: '1', '0', or '-' (not computed)."""
    return "-" if value is None else str(int(value))


def _format(value: float | None) -> str:
    """One per-image PSNR cell: '-' for an unmatched true image, 'inf' for an exact one."""
    if value is None:
        return "-"
    return "inf" if math.isinf(value) else f"{value:.3f}"
