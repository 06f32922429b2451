"""Per-image scores of a reconstructed batch: which reconstruction each true image is compared with, and its scores.

- **R ≤ B** (at most one reconstruction per true image): the attacker cannot know the batch's order, so the
  reconstructions are paired one-to-one with true images by :func:`~fedleak.metrics.matching.match_images`
  (Hungarian on MSE). Every reconstruction is scored; the B − R true images left over are not recovered.
- **R > B** (more reconstructions than true images, e.g. an attack that did not know B): pairing B of them with the
  true images would let ground truth pick which reconstructions count (64 unrelated dataset images, best 32 kept,
  scored above the mean-image baseline). Instead every true image is scored against *all* R reconstructions and
  keeps the median (the worse middle one for an even R): what an attacker gets by naming one of its outputs without
  knowing which is which. Recall and precision (:mod:`fedleak.metrics.gallery`) say how many of them were found.
"""

from __future__ import annotations

import torch

from fedleak.metrics.headline import median_mse, median_psnr, median_ssim
from fedleak.metrics.image import SSIM_MIN_SIZE, mse, psnr_from_mse, ssim
from fedleak.metrics.matching import pairwise_mse


def paired_scores(pairs: list[tuple[int, int]], recon: torch.Tensor | None,
                  true: torch.Tensor) -> list[tuple[int | None, float | None, float | None, float | None]]:
    """Per true image (recon index, PSNR, SSIM, MSE) for one-to-one ``pairs``; ``(None,)*4`` where unmatched."""
    scores: list[tuple[int | None, float | None, float | None, float | None]] = [(None, None, None, None)] * len(true)
    if not pairs:
        return scores
    matched_recon, matched_true = recon[[r for r, _ in pairs]], true[[t for _, t in pairs]]
    mse_values = mse(matched_recon, matched_true)
    psnr_values = psnr_from_mse(mse_values)
    ssim_values = ssim(matched_recon, matched_true) if min(true.shape[-2:]) >= SSIM_MIN_SIZE else None
    for k, (r, t) in enumerate(pairs):
        ssim_value = None if ssim_values is None else float(ssim_values[k])
        scores[t] = (r, float(psnr_values[k]), ssim_value, float(mse_values[k]))
    return scores


def blind_scores(recon: torch.Tensor, true: torch.Tensor) -> list[tuple[None, float, float | None, float]]:
    """Per true image (None, PSNR, SSIM, MSE), each the median over all R reconstructions (R > B)."""
    errors = pairwise_mse(recon, true)  # R×B
    decibels = psnr_from_mse(errors)
    scores = []
    for t in range(true.shape[0]):
        similarity = None
        if min(true.shape[-2:]) >= SSIM_MIN_SIZE:
            similarity = median_ssim(ssim(recon, true[t].unsqueeze(0).expand_as(recon)).tolist())
        scores.append((None, median_psnr(decibels[:, t].tolist()), similarity, median_mse(errors[:, t].tolist())))
    return scores
