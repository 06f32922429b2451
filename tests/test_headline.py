"""Every true image counts, one honest number per batch (issue 19, items 1 and 3), from the batch to the frontier."""

from __future__ import annotations

import doctest
import math

import pytest
import torch

import fedleak.metrics.headline
from fedleak.metrics import score_batch
from fedleak.metrics.headline import median_mse, median_psnr, median_ssim
from fedleak.report.frontier import leakage_numbers, leakage_per_round
from fedleak.report.tables import summarize
from fedleak.report.worst import client_leakage


def constant(value: float, count: int = 1, size: int = 16) -> torch.Tensor:
    return torch.full((count, 1, size, size), value, dtype=torch.float64)


def at_psnr(true: torch.Tensor, db: float) -> torch.Tensor:
    """``true`` shifted by a constant so that its PSNR is ``db`` (true values chosen away from 0 and 1)."""
    return true + 10 ** (-db / 20)


# ---------------------------------------------------------------- the rule


def test_a_mean_of_db_is_not_the_headline_the_worse_middle_image_is():
    assert median_psnr([6.3, 54.6]) == 6.3  # the mean of their dB, 30.45, would sit above a 30 dB line
    assert median_psnr([10.0, 20.0, 30.0, 40.0]) == 20.0
    assert median_psnr([10.0, 20.0, 30.0]) == 20.0
    assert median_mse([1e-4, 1e-2]) == 1e-2  # the worse of the two is the larger MSE
    assert median_ssim([0.2, 0.9]) == 0.2


@pytest.mark.parametrize("count", range(1, 9))
def test_a_median_at_or_above_the_line_means_at_least_half_the_images_are(count):
    gen = torch.Generator().manual_seed(count)
    for _ in range(200):
        values = (torch.rand(count, generator=gen) * 60).tolist()
        above = sum(v >= 30.0 for v in values)
        if median_psnr(values) >= 30.0:
            assert 2 * above >= count


def test_an_image_without_reconstruction_ranks_below_every_reconstruction():
    assert median_psnr([40.0, 35.0, None]) == 35.0
    assert median_psnr([40.0, None]) == -math.inf
    assert median_psnr([None, None, None]) == -math.inf
    assert median_mse([1e-4, None]) == math.inf
    assert median_psnr([]) is None


def test_infinity_only_when_every_image_is_exact():
    assert median_psnr([math.inf, math.inf]) == math.inf
    assert median_psnr([math.inf, math.inf, math.inf, 20.0]) == 20.0  # the best inexact image, a lower bound
    assert median_psnr([math.inf] + [None] * 31) == -math.inf
    assert median_mse([0.0, 0.0, 0.01]) == 0.01 and median_mse([0.0, 0.0]) == 0.0


def test_doctests_of_the_headline():
    result = doctest.testmod(fedleak.metrics.headline)
    assert result.attempted > 0 and result.failed == 0


# ---------------------------------------------------------------- a batch


def test_two_reconstructions_of_a_batch_of_32_one_exact_do_not_read_as_exact():
    true = 0.1 + 0.8 * torch.rand(32, 1, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    recon = torch.stack([true[3], at_psnr(true[9], 25.0)])
    score = score_batch(recon, None, true, torch.zeros(32, dtype=torch.long))
    assert score.psnr == -math.inf and score.mse == math.inf  # 30 of 32 images were not recovered
    assert score.success == pytest.approx(1 / 32)
    assert sum(item.psnr is None for item in score.per_image) == 30


def test_a_batch_at_6_and_55_db_is_below_the_success_line():
    true = torch.cat([constant(0.9), constant(0.1)])
    recon = torch.cat([constant(0.9 - 10 ** (-6.3 / 20)), at_psnr(constant(0.1), 54.6)])
    score = score_batch(recon, None, true, torch.tensor([0, 1]), success_psnr=30.0)
    per_image = sorted(item.psnr for item in score.per_image)
    assert per_image[0] < 30.0 <= per_image[1]
    assert score.psnr == per_image[0] and score.psnr < score.success_psnr
    assert score.success == 0.5


def test_a_mostly_exact_batch_is_not_infinite_unless_every_image_is():
    true = torch.cat([constant(v) for v in (0.2, 0.4, 0.6, 0.8)])
    recon = torch.cat([true[:3], at_psnr(true[3:], 20.0)])
    score = score_batch(recon, None, true, torch.zeros(4, dtype=torch.long))
    assert score.psnr == pytest.approx(20.0, abs=1e-6) and score.mse == pytest.approx(0.01)
    assert math.isinf(score_batch(true.flip(0), None, true, torch.zeros(4, dtype=torch.long)).psnr)


# ---------------------------------------------------------------- client and arm (report layer)


def row(client: int, attack: str, per_image: str, status: str = "ok", batch_size: int | None = None,
        round_: int = 1) -> dict:
    count = batch_size if batch_size is not None else len(per_image.split())
    return {"round": round_, "client": client, "attack": attack, "status": status, "batch_size": count,
            "psnr_per_image": per_image if status == "ok" else "", "defense": "none", "update_kind": "gradient",
            "local_steps": 1, "lr": 0.1, "psnr": None, "ssim": None, "success": None, "seconds": 1.0}


def test_a_client_and_an_arm_count_images_no_attack_recovered():
    rows = [row(0, "dlg", "inf - - -"), row(0, "idlg", "- - - 12.0")]
    (client,) = client_leakage(rows)
    assert client.images == 4 and client.worst_median_psnr == -math.inf  # 2 of 4 images not recovered
    median, rate, images = leakage_numbers(rows, success_psnr=30.0)
    assert (median, rate, images) == (-math.inf, 0.25, 4)
    assert leakage_per_round(rows) == [(1, -math.inf)]


def test_a_client_is_infinite_only_when_every_attacked_image_is_exact():
    mostly = [row(0, "dlg", "inf inf inf"), row(0, "dlg", "25.0", round_=2)]
    assert client_leakage(mostly)[0].worst_median_psnr == 25.0
    assert leakage_numbers(mostly, 30.0)[0] == 25.0
    exact = [row(0, "dlg", "inf inf"), row(0, "rgap", "- inf")]
    assert client_leakage(exact)[0].worst_median_psnr == math.inf
    assert leakage_numbers(exact, 30.0)[0] == math.inf


def test_a_failed_attempt_counts_its_images_as_not_recovered_in_the_attack_table():
    rows = [row(0, "dlg", "35.0 36.0"), row(0, "dlg", "", status="failed", batch_size=2, round_=2),
            row(0, "dlg", "", status="skipped", batch_size=64, round_=3)]
    (summary,) = summarize(rows)
    assert summary.median_psnr == -math.inf  # 35, 36 and two failures: the worse middle image failed
    assert summarize(rows[:1] + rows[2:])[0].median_psnr == 35.0  # a skipped attempt attacked nothing
