"""Ground truth never chooses which reconstructions count (issue 19, item 2): a null attack — R real images of the
same dataset that are none of the batch — scores at or below the mean-image baseline, and re-identifies nothing,
for R = 1, B and 4B."""

from __future__ import annotations

import math

import pytest
import torch

from fedleak.config.schema import DataConfig
from fedleak.data import load_images
from fedleak.metrics import ReferenceSet, match_images, psnr, score_batch
from fedleak.metrics.headline import median_psnr

B = 8
#: The true batch lies inside the gallery (its first 1000 images); the null attack draws from images 3000-4999.
TRUE = list(range(200, 200 + B))
NULL_FROM = 3000


@pytest.fixture(scope="module")
def mnist():
    image_set = load_images(DataConfig(dataset="mnist", split="train"))
    assert len(image_set) == 5000
    return image_set, ReferenceSet.of(image_set)


def null_attack(image_set, count: int, seed: int) -> torch.Tensor:
    """``count`` dataset images drawn at random from a split disjoint from the batch (and from the gallery)."""
    picks = torch.randperm(len(image_set) - NULL_FROM, generator=torch.Generator().manual_seed(seed))[:count]
    return image_set.get((picks + NULL_FROM).tolist())[0]


@pytest.mark.parametrize("count", [1, B, 4 * B])
@pytest.mark.parametrize("seed", [0, 1])
def test_a_null_attack_scores_at_or_below_the_baseline_and_re_identifies_nothing(mnist, count, seed):
    image_set, reference = mnist
    true, labels = image_set.get(TRUE)
    score = score_batch(null_attack(image_set, count, seed), None, true, labels, reference=reference)
    assert score.reconstructions == count and score.batch_size == B
    assert score.psnr <= score.baseline_psnr, (score.psnr, score.baseline_psnr)
    assert score.success == 0.0
    assert score.reidentified <= 1 / B and score.reidentified_precision <= 1 / B  # ≈ 0: at most one chance hit


def test_picking_the_best_b_of_4b_by_ground_truth_would_have_flattered_the_null_attack(mnist):
    image_set, reference = mnist
    true, labels = image_set.get(TRUE)
    null = null_attack(image_set, 4 * B, 0)
    chosen = match_images(null, true)  # the old scorer: the B outputs nearest the true images, chosen by them
    kept, paired = null[[r for r, _ in chosen]].double(), true[[t for _, t in chosen]].double()
    flattering = median_psnr(psnr(kept, paired).tolist())
    honest = score_batch(null, None, true, labels, reference=reference)
    assert honest.psnr < flattering
    assert all(item.recon_index is None for item in honest.per_image)  # no pairing when R > B


def test_with_more_outputs_than_images_every_true_image_keeps_the_median_over_all_of_them(mnist):
    image_set, reference = mnist
    true, labels = image_set.get(TRUE[:2])
    # The two true images, exactly, plus one unrelated image: each true image's outputs are itself and two others.
    recon = torch.cat([true, null_attack(image_set, 1, 0)])
    score = score_batch(recon, None, true, labels, reference=reference)
    assert score.reconstructions == 3
    for item in score.per_image:
        assert math.isfinite(item.psnr) and item.psnr < 30  # the median of ∞ and two unrelated images
    assert score.reidentified == 1.0 and score.reidentified_precision == pytest.approx(2 / 3)
