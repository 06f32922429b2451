"""The scorer: ground truth joined with a reconstruction into one LeakageRecord row."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fedleak.config.schema import DataConfig
from fedleak.data import load_images
from fedleak.metrics.gallery import Gallery
from fedleak.report import RunWriter
from fedleak.report.tables import read_leakage
from fedleak.scoring import score_reconstruction
from fedleak.types import Reconstruction, ScoringContext, ThreatModel

THREAT = ThreatModel(labels_known=True, local_hparams_known=False)


def context(batch_size: int, **changes) -> ScoringContext:
    fields = dict(round=2, client=3, indices=tuple(range(batch_size)), batch_size=batch_size, local_steps=1, lr=0.1,
                  update_kind="gradient") | changes
    return ScoringContext(**fields)


def scored(recon: Reconstruction, images: torch.Tensor, labels: torch.Tensor, success_psnr: float = 30.0):
    return score_reconstruction(recon, images, labels, context(len(images)), attack="dlg", threat=THREAT,
                                success_psnr=success_psnr)


def score(recon: Reconstruction, images: torch.Tensor, labels: torch.Tensor, success_psnr: float = 30.0):
    return scored(recon, images, labels, success_psnr).record


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Four real MNIST test digits (bundled with foolbox, offline)."""
    return load_images(DataConfig(dataset="mnist", split="test")).get([0, 1, 2, 3])


def test_failed_reconstruction_gives_failed_row_with_empty_metrics(batch):
    images, labels = batch
    row = score(Reconstruction.failed("diverged: non-finite pixels", seconds=1.5), images, labels)
    assert (row.status, row.reason, row.seconds) == ("failed", "diverged: non-finite pixels", 1.5)
    assert row.psnr is row.ssim is row.mse is row.label_accuracy is row.success is None
    assert (row.round, row.client, row.attack, row.batch_size) == (2, 3, "dlg", 4)
    assert (row.labels_known, row.local_hparams_known, row.batch_size_known) == (True, False, True)


def test_exact_reconstruction_in_any_order_is_infinite_psnr(batch):
    images, labels = batch
    order = torch.tensor([2, 0, 3, 1])
    row = score(Reconstruction(images=images[order], labels=labels[order]), images, labels)
    assert row.status == "ok" and row.psnr == math.inf and row.mse == 0.0
    assert row.ssim == pytest.approx(1.0) and row.label_accuracy == 1.0 and row.success == 1.0
    assert row.psnr_per_image == "inf inf inf inf"


def test_noisy_reconstruction_psnr_is_peak_one_against_numpy(batch):
    images, labels = batch
    noisy = (images + 0.05 * torch.randn(images.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    row = score(Reconstruction(images=noisy), images, labels, success_psnr=26.0)
    diff = noisy.double().numpy() - images.double().numpy()
    per_image = 10 * np.log10(1.0 / (diff**2).reshape(4, -1).mean(axis=1))  # peak 1 on [0, 1] images
    assert row.psnr == pytest.approx(np.sort(per_image)[1], rel=1e-6)  # the worse middle image of four, no mean
    assert [float(v) for v in row.psnr_per_image.split()] == pytest.approx(per_image, abs=1e-3)
    assert row.success == pytest.approx(np.mean(per_image >= 26.0))
    assert row.label_accuracy is None  # the attack gave no labels


def test_labels_only_and_missing_images(batch):
    images, labels = batch
    row = score(Reconstruction(images=None, labels=labels.flip(0)), images, labels)
    assert row.status == "ok" and row.label_accuracy == 1.0
    assert row.psnr == -math.inf and row.success == 0.0 and row.psnr_per_image == "- - - -"  # none recovered


def test_fewer_images_than_the_batch_count_as_misses(batch):
    images, labels = batch
    row = score(Reconstruction(images=images[[1]]), images, labels)
    assert row.psnr == -math.inf and row.success == pytest.approx(0.25)  # one exact image of four is no exact batch
    assert row.psnr_per_image == "- inf - -"


def test_wrong_shape_is_a_failed_row_not_a_crash(batch):
    images, labels = batch
    row = score(Reconstruction(images=torch.rand(4, 3, 32, 32)), images, labels)
    assert row.status == "failed" and row.reason.startswith("unscorable reconstruction:")
    assert row.psnr is None


def test_lined_up_images_follow_the_scores_matching(batch):
    images, labels = batch
    lined_up = scored(Reconstruction(images=images[[3, 1]]), images, labels).lined_up
    assert torch.equal(lined_up[1], images[1]) and torch.equal(lined_up[3], images[3])
    assert torch.all(lined_up[0] == 0.5) and torch.all(lined_up[2] == 0.5)
    assert scored(Reconstruction(images=None, labels=labels), images, labels).lined_up is None
    assert scored(Reconstruction(images=torch.rand(2, 3, 32, 32)), images, labels).lined_up is None


def test_rows_round_trip_through_leakage_csv(batch, tmp_path):
    images, labels = batch
    writer = RunWriter(tmp_path)
    writer.append_leakage(score(Reconstruction(images=images), images, labels))
    writer.append_leakage(score(Reconstruction.failed("timeout"), images, labels))
    ok, failed = read_leakage(tmp_path / "leakage.csv").rows
    assert ok["psnr"] == math.inf and ok["success"] == 1.0 and ok["labels_known"] is True
    assert failed["status"] == "failed" and failed["reason"] == "timeout" and failed["ssim"] is None


def test_label_accuracy_counts_the_label_of_the_matched_true_image(batch):
    images, labels = batch
    assert len(set(labels.tolist())) == 4  # four different digits: a shifted label is always wrong
    order = torch.tensor([2, 0, 3, 1])
    # The same multiset of labels, but each reconstruction carries the label of another image.
    row = score(Reconstruction(images=images[order], labels=labels[order].roll(1)), images, labels)
    assert row.label_accuracy == 0.0
    half = labels[order].clone()
    half[[0, 1]] = half[[1, 0]]
    assert score(Reconstruction(images=images[order], labels=half), images, labels).label_accuracy == 0.5


def test_rows_carry_baseline_reidentification_and_dp_columns(tmp_path):
    from fedleak.metrics import ReferenceSet

    image_set = load_images(DataConfig(dataset="mnist", split="test"))
    images, labels = image_set.get([0, 1, 2, 3])
    # A mid-grey image identifies no digit here (a blank would: its nearest by SSIM among 20 digits is the "1").
    recon = torch.stack([images[2], torch.full_like(images[0], 0.5)])
    dp = context(4, round=1, client=0, defense="dp_sgd", dp_epsilon=2.5, dp_delta=1e-5, dp_unit="record")
    row = score_reconstruction(Reconstruction(images=recon), images, labels, dp, attack="idlg", threat=THREAT,
                               success_psnr=30.0, reference=ReferenceSet.of(image_set)).record
    assert row.reidentified == 0.25 and row.reidentified_per_image.split() == ["0", "0", "1", "0"]
    assert row.reidentified_precision == 0.5 and row.reconstructions == 2  # the grey image re-identifies nobody
    assert (row.gallery, row.gallery_size) == (Gallery.for_reference(ReferenceSet.of(image_set)).description, 20)
    baselines = [float(v) for v in row.baseline_psnr_per_image.split()]
    assert len(baselines) == 4 and row.baseline_psnr == pytest.approx(np.sort(baselines)[1], abs=1e-3)
    RunWriter(tmp_path).append_leakage(row)
    (back,) = read_leakage(tmp_path / "leakage.csv").rows
    assert (back["dp_epsilon"], back["dp_delta"], back["dp_unit"]) == (2.5, 1e-5, "record")
    assert back["reidentified"] == 0.25 and back["baseline_psnr"] == pytest.approx(row.baseline_psnr)
    assert (back["reidentified_precision"], back["gallery_size"], back["reconstructions"]) == (0.5, 20, 2)
    assert back["gallery"] == row.gallery


def test_rows_without_dp_have_empty_dp_columns(batch, tmp_path):
    images, labels = batch
    RunWriter(tmp_path).append_leakage(score(Reconstruction(images=images), images, labels))
    (back,) = read_leakage(tmp_path / "leakage.csv").rows
    assert back["dp_epsilon"] is None and back["dp_delta"] is None and back["dp_unit"] is None
    assert back["baseline_psnr"] is None and back["reidentified"] is None
