"""Metrics against hand-computed values and an independent numpy SSIM of Wang et al. 2004."""

import doctest
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import fedleak.metrics.image
import fedleak.metrics.matching
from fedleak.metrics import (
    HIGHER_IS_BETTER,
    label_accuracy,
    match_images,
    mse,
    psnr,
    psnr_from_mse,
    score_batch,
    ssim,
)


def constant(value: float, shape=(1, 1, 16, 16)) -> torch.Tensor:
    return torch.full(shape, value, dtype=torch.float64)


# ---------------------------------------------------------------- MSE / PSNR


def test_mse_of_constant_images_is_squared_difference():
    assert mse(constant(0.2), constant(0.7)).tolist() == pytest.approx([0.25], abs=1e-15)


def test_mse_is_per_image():
    x = torch.cat([constant(0.0), constant(0.0)])
    y = torch.cat([constant(0.1), constant(0.3)])
    assert mse(x, y).tolist() == pytest.approx([0.01, 0.09], abs=1e-15)


def test_psnr_uses_peak_one_mse_1e4_is_40_db():
    assert psnr_from_mse(torch.tensor([1e-4], dtype=torch.float64)).item() == 40.0
    # Same through images: a constant offset of 0.01 has MSE 1e-4. Peak 255 would report 88.13 dB here.
    assert psnr(constant(0.0), constant(0.01)).item() == pytest.approx(40.0, abs=1e-9)
    assert psnr(constant(0.5), constant(0.6)).item() == pytest.approx(20.0, abs=1e-9)


def test_psnr_of_identical_images_is_inf():
    x = torch.rand(2, 3, 8, 8)
    assert torch.isinf(psnr(x, x)).all()


def test_psnr_is_computed_in_float64_even_for_float32_inputs():
    x = torch.rand(1, 3, 8, 8)
    y = (x + 1e-6).clamp(max=1.0)
    assert psnr(x, y).dtype == torch.float64
    assert math.isfinite(psnr(x, y).item())


def test_mismatched_shapes_are_an_error():
    with pytest.raises(ValueError, match="shapes differ"):
        mse(torch.zeros(1, 1, 4, 4), torch.zeros(1, 3, 4, 4))


def test_higher_is_better_facts():
    assert HIGHER_IS_BETTER == {"mse": False, "psnr": True, "ssim": True}


# ---------------------------------------------------------------- SSIM


def reference_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. 2004 SSIM written out directly (11×11 Gaussian, σ 1.5, population moments, valid windows).

    Independent of scikit-image: explicit windows at every position where the window lies inside the image,
    averaged; colour = mean over channels.
    """
    c1, c2 = (0.01 * 1.0) ** 2, (0.03 * 1.0) ** 2
    offsets = np.arange(-5, 6)
    g = np.exp(-(offsets**2) / (2 * 1.5**2))
    g /= g.sum()
    weights = np.outer(g, g)
    per_channel = []
    for a, b in zip(x, y, strict=True):
        height, width = a.shape
        values = []
        for i in range(5, height - 5):
            for j in range(5, width - 5):
                pa, pb = a[i - 5 : i + 6, j - 5 : j + 6], b[i - 5 : i + 6, j - 5 : j + 6]
                mu_a, mu_b = (weights * pa).sum(), (weights * pb).sum()
                var_a = (weights * (pa - mu_a) ** 2).sum()
                var_b = (weights * (pb - mu_b) ** 2).sum()
                cov = (weights * (pa - mu_a) * (pb - mu_b)).sum()
                values.append(
                    ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
                )
        per_channel.append(np.mean(values))
    return float(np.mean(per_channel))


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_matches_independent_numpy_implementation(channels):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, channels, 17, 19, generator=gen, dtype=torch.float64)
    # Correlated but different: a blurred, noisy, darkened copy, so SSIM is far from 0 and from 1.
    y = (0.7 * x + 0.3 * torch.rand(x.shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    got = ssim(x, y)
    expected = [reference_ssim(a, b) for a, b in zip(x.numpy(), y.numpy(), strict=True)]
    assert 0.2 < min(expected) < max(expected) < 0.95
    assert got.tolist() == pytest.approx(expected, abs=1e-10)


def test_ssim_of_constant_images_matches_hand_formula():
    # Constant images have zero variance, so SSIM = (2ab + C1) / (a² + b² + C1) with C1 = 1e-4.
    a, b = 0.5, 0.25
    expected = (2 * a * b + 1e-4) / (a**2 + b**2 + 1e-4)
    assert ssim(constant(a), constant(b)).item() == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(0.80006, abs=1e-5)


def test_ssim_of_identical_images_is_one():
    x = torch.rand(3, 3, 25, 25)
    assert ssim(x, x).tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-12)


def test_ssim_drops_for_unrelated_images():
    gen = torch.Generator().manual_seed(1)
    x, y = torch.rand(1, 1, 28, 28, generator=gen), torch.rand(1, 1, 28, 28, generator=gen)
    assert ssim(x, y).item() < 0.1


def test_ssim_refuses_images_smaller_than_the_window():
    assert ssim(torch.rand(1, 1, 11, 11), torch.rand(1, 1, 11, 11)).shape == (1,)
    with pytest.raises(ValueError, match="at least 11×11"):
        ssim(torch.rand(1, 1, 10, 12), torch.rand(1, 1, 10, 12))


# ---------------------------------------------------------------- matching and labels


def test_hungarian_matching_recovers_a_known_permutation():
    gen = torch.Generator().manual_seed(2)
    true = torch.rand(6, 3, 8, 8, generator=gen)
    perm = [4, 0, 5, 2, 1, 3]
    recon = (true[perm] + 0.05 * torch.randn(true.shape, generator=gen)).clamp(0, 1)
    pairs = match_images(recon, true)
    # recon[k] is a noisy true[perm[k]]
    assert sorted(pairs) == sorted((k, perm[k]) for k in range(6))
    assert [t for _, t in pairs] == list(range(6))


def test_matching_is_global_not_greedy():
    # costs (MSE): r0–t0 0.04, r0–t1 0.01, r1–t0 0.25, r1–t1 0.04. Greedy takes r0–t1 first (0.01) and is left
    # with r1–t0 (total 0.26); the optimum is r0–t0 + r1–t1 = 0.08.
    true = torch.tensor([0.0, 0.3]).view(2, 1, 1, 1)
    recon = torch.tensor([0.2, 0.5]).view(2, 1, 1, 1)
    assert match_images(recon, true) == [(0, 0), (1, 1)]


def test_matching_with_fewer_and_more_reconstructions():
    true = torch.stack([constant(v, (1, 4, 4)) for v in (0.0, 0.3, 0.6, 0.9)])
    fewer = torch.stack([constant(0.62, (1, 4, 4)), constant(0.01, (1, 4, 4))])
    assert match_images(fewer, true) == [(1, 0), (0, 2)]
    more = torch.cat([true[[3, 1]], constant(0.45, (3, 1, 4, 4))])
    pairs = match_images(more, true[[1, 3]])
    assert pairs == [(1, 0), (0, 1)]


def test_matching_rejects_nan_and_mismatched_shapes():
    with pytest.raises(ValueError, match="NaN"):
        match_images(torch.full((1, 1, 4, 4), float("nan")), torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="reconstructed images are"):
        match_images(torch.zeros(1, 1, 4, 4), torch.zeros(1, 3, 4, 4))


@pytest.mark.parametrize(
    ("pred", "true", "expected"),
    [
        ([3, 1], [1, 3], 1.0),
        ([1, 1], [1, 3], 0.5),
        ([1, 1, 7], [7, 1, 2], 2 / 3),
        ([5, 5, 5, 5], [5, 5, 2, 2], 0.5),
        ([], [1, 2], 0.0),
        ([1, 2, 3, 4], [4, 1], 1.0),
    ],
)
def test_label_accuracy_compares_multisets(pred, true, expected):
    assert label_accuracy(pred, true) == pytest.approx(expected)
    assert label_accuracy(torch.tensor(pred, dtype=torch.long), torch.tensor(true)) == pytest.approx(expected)


def test_label_accuracy_reads_soft_labels_as_their_argmax():
    soft = torch.tensor([[0.1, 0.7, 0.2], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5]])
    assert label_accuracy(soft, [0, 2, 2]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="class indices"):
        label_accuracy(torch.zeros(2, 3, 4), [0, 1])


def test_label_accuracy_needs_true_labels():
    with pytest.raises(ValueError):
        label_accuracy([1], [])


# ---------------------------------------------------------------- score_batch


def test_score_batch_on_a_shuffled_batch_is_perfect():
    gen = torch.Generator().manual_seed(3)
    true = torch.rand(5, 3, 16, 16, generator=gen)
    labels = torch.tensor([0, 4, 4, 9, 2])
    perm = torch.tensor([2, 4, 0, 1, 3])
    score = score_batch(true[perm], labels[perm], true, labels)
    assert score.batch_size == 5
    assert math.isinf(score.psnr) and score.mse == 0.0
    assert score.ssim == pytest.approx(1.0, abs=1e-12)
    assert score.label_accuracy == 1.0 and score.success == 1.0
    assert score.rates == {"psnr>=20": 1.0, "psnr>=30": 1.0, "psnr>=40": 1.0, "mse<=0.001": 1.0}
    # recon[k] is true[perm[k]], so true image t is reconstructed by the k with perm[k] == t
    expected = [(t, perm.tolist().index(t)) for t in range(5)]
    assert [(s.true_index, s.recon_index) for s in score.per_image] == expected


def test_score_batch_with_fewer_reconstructions_counts_unmatched_as_failures():
    true = torch.stack([constant(v, (1, 16, 16)) for v in (0.1, 0.4, 0.7, 0.9)])
    # One exact-ish (MSE 1e-4 → 40 dB), one at MSE 0.01 (20 dB), two true images never reconstructed.
    recon = torch.stack([constant(0.6, (1, 16, 16)), constant(0.11, (1, 16, 16))])
    score = score_batch(recon, torch.tensor([3]), true, torch.tensor([3, 3, 1, 0]))
    by_true = {s.true_index: s for s in score.per_image}
    assert by_true[0].recon_index == 1 and by_true[0].psnr == pytest.approx(40.0, abs=1e-9)
    assert by_true[2].recon_index == 0 and by_true[2].psnr == pytest.approx(20.0, abs=1e-9)
    assert by_true[1].recon_index is None and by_true[1].psnr is None
    assert by_true[3].recon_index is None
    # Median over all 4 true images, the two not recovered counting as −∞: the worse middle image is not recovered.
    assert score.psnr == -math.inf and score.mse == math.inf and score.ssim == -math.inf
    assert score.success == 0.25  # 1 of 4 true images reaches 30 dB
    assert score.rates["psnr>=20"] == 0.5
    assert score.rates["psnr>=40"] == pytest.approx(0.25)  # 40 dB up to float rounding of 0.11 − 0.1
    assert score.rates["mse<=0.001"] == 0.25
    assert score.label_accuracy == 0.25


def test_score_batch_without_images_or_labels():
    true = torch.rand(3, 1, 12, 12)
    score = score_batch(None, None, true, torch.tensor([0, 1, 2]))
    assert score.psnr == -math.inf and score.mse == math.inf  # every true image counts, none recovered
    assert score.ssim == -math.inf and score.label_accuracy is None
    assert score.success == 0.0 and set(score.rates.values()) == {0.0}
    assert all(s.recon_index is None for s in score.per_image)


def test_score_batch_clamps_reconstructions_to_unit_range():
    true = constant(1.0, (1, 1, 12, 12))
    over = constant(1.5, (1, 1, 12, 12))
    assert math.isinf(score_batch(over, None, true, torch.tensor([0])).psnr)


def test_score_batch_on_images_below_the_ssim_window_scores_all_but_ssim():
    true = torch.rand(2, 1, 8, 8)
    score = score_batch(true.flip(0), None, true, torch.tensor([0, 1]))
    assert score.ssim is None and all(s.ssim is None for s in score.per_image)
    assert math.isinf(score.psnr) and score.success == 1.0


def test_score_batch_rejects_true_images_outside_unit_range():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        score_batch(None, None, constant(255.0, (1, 1, 12, 12)), torch.tensor([0]))


def test_success_threshold_is_a_parameter():
    true = constant(0.5, (1, 1, 12, 12))
    recon = constant(0.6, (1, 1, 12, 12))  # 20 dB
    assert score_batch(recon, None, true, torch.tensor([0]), success_psnr=30.0).success == 0.0
    assert score_batch(recon, None, true, torch.tensor([0]), success_psnr=19.0).success == 1.0


def test_to_dict_is_json_serialisable_with_inf_as_string():
    true = torch.rand(2, 3, 12, 12)
    data = score_batch(true.flip(0), torch.tensor([1, 0]), true, torch.tensor([0, 1])).to_dict()
    text = json.dumps(data, allow_nan=False)
    back = json.loads(text)
    assert back["psnr"] == "inf" and back["per_image"][0]["psnr"] == "inf"
    assert back["per_image"][0]["recon_index"] == 1


def test_doctests_of_the_metrics_modules():
    for module in (fedleak.metrics.image, fedleak.metrics.matching):
        result = doctest.testmod(module, extraglobs={"torch": torch})
        assert result.attempted > 0 and result.failed == 0


# ---------------------------------------------------------------- real images


def test_metrics_on_a_bundled_real_photo():
    # scikit-image ships this public-domain portrait, so the test always runs.
    from skimage.data import astronaut

    photo = torch.from_numpy(astronaut()[::4, ::4].transpose(2, 0, 1).astype(np.float64) / 255.0).unsqueeze(0)
    gen = torch.Generator().manual_seed(4)
    noise = torch.randn(photo.shape, generator=gen, dtype=torch.float64)
    light, heavy = (photo + 0.01 * noise).clamp(0, 1), (photo + 0.2 * noise).clamp(0, 1)
    # σ = 0.01 noise has MSE ≈ 1e-4 (clamping at 0 and 1 only lowers it): ≈ 40 dB.
    assert 39.8 < psnr(photo, light).item() < 41.0
    assert psnr(photo, heavy).item() < 16.0
    assert ssim(photo, light).item() > 0.95 > ssim(photo, heavy).item()


def test_score_batch_on_a_shuffled_noisy_cifar_batch():
    root = os.environ.get("FEDLEAK_FIXTURES")
    if not root:
        pytest.skip("FEDLEAK_FIXTURES is not set")
    path = Path(root) / "cifar10_test_first1000.npz"
    if not path.exists():
        pytest.skip(f"{path} is missing")
    data = np.load(path)
    images = torch.from_numpy(data["x"][:8].transpose(0, 3, 1, 2).astype(np.float64) / 255.0)
    labels = torch.from_numpy(data["y"][:8])
    gen = torch.Generator().manual_seed(5)
    perm = torch.randperm(8, generator=gen)
    recon = (images[perm] + 0.01 * torch.randn(images.shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    score = score_batch(recon, labels[perm][:6], images, labels)
    assert [s.recon_index for s in score.per_image] == [perm.tolist().index(t) for t in range(8)]
    assert 39.8 < score.psnr < 41.0
    assert score.success == 1.0 and score.rates["mse<=0.001"] == 1.0
    assert score.label_accuracy == 0.75


def test_score_batch_counts_labels_on_the_matched_pairs():
    true = torch.stack([constant(v, (1, 12, 12)) for v in (0.1, 0.5, 0.9)])
    labels = torch.tensor([4, 7, 2])
    recon = true[[2, 0, 1]]  # reconstruction r shows true image (2, 0, 1)[r]
    right = score_batch(recon, labels[[2, 0, 1]], true, labels)
    assert right.label_accuracy == 1.0 and right.label_pairing == "matched"
    # The same labels as a multiset, each on the wrong image: a multiset comparison would say 1.0.
    wrong = score_batch(recon, labels, true, labels)
    assert wrong.label_accuracy == 0.0 and label_accuracy(labels, labels) == 1.0
    # Labels that cannot be paired with images (another count) fall back to the multisets, and say so.
    unpaired = score_batch(recon[:2], labels, true, labels)
    assert unpaired.label_accuracy == 1.0 and unpaired.label_pairing == "multiset"
