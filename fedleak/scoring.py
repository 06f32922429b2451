"""The scorer: joins a reconstruction with the client's true batch and turns it into one result row.

This is the only place ground truth meets an attack's output. Attacks never see it; the simulation looks the
true batch up from the client's audit indices and calls :func:`score_reconstruction` with it, together with the
run's whole dataset (a :class:`~fedleak.metrics.reference.ReferenceSet`) for the mean-image baseline and
re-identification.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from fedleak.types import LeakageRecord, Reconstruction, ThreatModel

if TYPE_CHECKING:  # the metrics (scikit-image, scipy) load only when something is scored
    from fedleak.metrics.reference import ReferenceSet


def score_reconstruction(
    recon: Reconstruction,
    true_images: torch.Tensor,
    true_labels: torch.Tensor,
    *,
    round: int,
    client: int,
    attack: str,
    batch_size: int,
    local_steps: int,
    lr: float,
    update_kind: str,
    defense: str,
    threat: ThreatModel,
    success_psnr: float,
    dp_epsilon: float | None = None,
    dp_delta: float | None = None,
    dp_unit: str = "",
    reference: ReferenceSet | None = None,
    local_epochs: int | None = None,
) -> LeakageRecord:
    """Score one attack on one client's update in one round.

    A failed reconstruction gives a row with status ``failed``, its reason and empty metrics. So does a
    reconstruction that cannot be scored (e.g. a shape that does not match the true batch): the reason
    says why, and the run goes on.

    Args:
        recon: What the attack returned.
        true_images: The client's batch, B×C×H×W in [0, 1].
        true_labels: Its labels, B class indices.
        round, client, attack: Where the update came from and which attack ran.
        batch_size, local_steps, lr, update_kind, defense: How the client trained and what protected it.
        local_epochs: passes over the client's shard (update kind ``epochs``), else None.
        threat: The grants the attack ran under (written into the row).
        success_psnr: PSNR (dB) at or above which an image counts as reconstructed.
        dp_epsilon, dp_delta, dp_unit: the cumulative ε the client had spent by this round, its δ, and ``record``
            (DP-SGD) or ``update`` (local DP); empty without DP.
        reference: every image of the run's data source (baseline PSNR, re-identification); None leaves both empty.
    """
    context = dict(
        round=int(round), client=int(client), attack=attack, batch_size=int(batch_size),
        local_steps=int(local_steps), lr=float(lr), update_kind=update_kind, defense=defense,
        seconds=float(recon.seconds), labels_known=threat.labels_known,
        local_hparams_known=threat.local_hparams_known, batch_size_known=threat.batch_size_known,
        dp_epsilon=dp_epsilon, dp_delta=dp_delta, dp_unit=dp_unit or "",
        local_epochs=None if local_epochs is None else int(local_epochs),
    )
    if recon.status != "ok":
        # "skipped" (e.g. an update over more images than the attack's cap) stays apart from a real failure.
        return _failed(context, recon.reason or "attack reported failure without a reason", recon.status)
    try:
        score = batch_score(recon, true_images, true_labels, success_psnr, reference)
    except (ValueError, RuntimeError) as exc:  # e.g. a batch of the wrong shape: a result, not a dead run
        return _failed(context, f"unscorable reconstruction: {exc}")
    return _scored(score, context)


def _scored(score: Any, context: dict[str, Any]) -> LeakageRecord:
    """The row of a scored reconstruction: batch means plus the per-image facts, in the true batch's order."""
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
        **context,
    )


def batch_score(recon: Reconstruction, true_images: torch.Tensor, true_labels: torch.Tensor, success_psnr: float,
                reference: ReferenceSet | None = None):
    """fedleak.metrics.score_batch on a reconstruction (images/labels may be None); with ``reference`` (the run's
    dataset) the score carries ``baseline_psnr`` and ``reidentified``."""
    from fedleak.metrics import score_batch

    return score_batch(recon.images, recon.labels, true_images, true_labels, success_psnr=success_psnr,
                       reference=reference)


def per_image_psnr(score: Any) -> list[float | None]:
    """PSNR of each true image after one-to-one matching, in the true batch's order (None: unmatched)."""
    return [None if item.psnr is None else float(item.psnr) for item in score.per_image]


def matched_images(recon_images: torch.Tensor | None, true_images: torch.Tensor) -> torch.Tensor | None:
    """The reconstruction reordered to line up with the true batch (Hungarian matching, as the scorer does).

    True images nobody reconstructed get a mid-grey placeholder. Returns None when there is nothing to show
    or the shapes cannot be compared.
    """
    from fedleak.metrics import match_images

    if recon_images is None or len(recon_images) == 0:
        return None
    recon = recon_images.detach().cpu().float().clamp(0, 1)
    true = true_images.detach().cpu().float()
    try:
        pairs = match_images(recon, true)
    except ValueError:
        return None
    lined_up = torch.full_like(true, 0.5)
    for r, t in pairs:
        lined_up[t] = recon[r]
    return lined_up


def _failed(context: dict[str, Any], reason: str, status: str = "failed") -> LeakageRecord:
    return LeakageRecord(status=status, reason=reason, psnr=None, ssim=None, mse=None, label_accuracy=None,
                         success=None, **context)


def _number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _flag(value: bool | None) -> str:
    """One per-image re-identification cell: '1', '0', or '-' (unmatched)."""
    return "-" if value is None else str(int(value))


def _format(value: float | None) -> str:
    """One per-image PSNR cell: '-' for an unmatched true image, 'inf' for an exact one."""
    if value is None:
        return "-"
    return "inf" if math.isinf(value) else f"{value:.3f}"
