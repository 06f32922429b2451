"""``fedleak attack``'s metrics.json carries the dataset-relative scores: baseline_psnr and reidentified."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedleak.drivers.cli.main import main


def test_linear_inversion_of_one_digit_beats_its_baseline_and_names_the_digit(tmp_path: Path):
    # The closed form is exact for one image: it must be re-identified among MNIST's 5000 bundled training digits.
    rc = main(["attack", "--attack", "linear", "--model", "linreg", "--dataset", "mnist", "--index", "7",
               "--device", "cpu", "--out", str(tmp_path)])
    assert rc == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "ok"
    assert metrics["reidentified"] == 1.0 and metrics["per_image"][0]["reidentified"] is True
    baseline = metrics["baseline_psnr"]
    assert 5.0 < baseline < 20.0 and metrics["per_image"][0]["baseline_psnr"] == pytest.approx(baseline)
    psnr = metrics["psnr"]
    assert psnr == "inf" or psnr > baseline + 20
