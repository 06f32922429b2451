"""The thesis entries (``thesis-linreg``, ``thesis-batch-sizes``), the ``architectures`` entry, and ``linreg-mse``:
the squared-error model's gradient is the closed form's, the client and the attacker use the same loss, and each
entry's --quick run writes its table and figures and shows what can fail (DLG on one image vs several)."""

from __future__ import annotations

import csv
import math
import re

import pytest
import torch

from fedleak.drivers.cli.main import main
from fedleak.training import batch_gradient, functional_gradient, loss_of, squared_error_loss
from fedleak.types import ModelSpec


def _rows(folder) -> dict[str, dict[str, str]]:
    with open(folder / "table.csv", newline="") as handle:
        return {row["figure"]: row for row in csv.DictReader(handle)}


def _psnr(text: str) -> float:
    """The first PSNR in a table cell ("… 117.3 dB …" or "inf dB")."""
    match = re.search(r"(inf|-?\d+(?:\.\d+)?)(?: \([^)]*\))? dB", text)
    assert match, f"no PSNR in {text!r}"
    return math.inf if match.group(1) == "inf" else float(match.group(1))


def test_list_shows_the_three_entries(capsys):
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ("thesis-linreg", "thesis-batch-sizes", "architectures"):
        assert f"{name}: " in out


def test_linreg_mse_declares_squared_error_and_its_gradient_is_alpha_times_x():
    spec = ModelSpec("linreg-mse", 3, 8, 1)
    torch.manual_seed(0)
    model = spec.build()
    assert loss_of(model) is squared_error_loss
    image, target = torch.rand(1, 3, 8, 8), torch.tensor([3])
    grads = batch_gradient(model, image, target)
    alpha = 2 * (model(image) - 3.0)  # d/dy of (y − t)², t = the class index as a real number
    assert torch.allclose(grads["fc.bias"], alpha.reshape(-1), atol=1e-5)
    assert torch.allclose(grads["fc.weight"], alpha.reshape(-1, 1) * image.flatten(1), atol=1e-5)
    recovered = grads["fc.weight"].double() / grads["fc.bias"].double()[:, None]
    assert torch.allclose(recovered.float(), image.flatten(1), atol=1e-5)


def test_squared_error_one_hot_target_and_the_functional_gradient_agree():
    spec = ModelSpec("linreg-mse", 1, 6, 4)
    torch.manual_seed(1)
    model = spec.build()
    images, labels = torch.rand(2, 1, 6, 6), torch.tensor([0, 2])
    outputs = model(images)
    expected = ((outputs - torch.eye(4)[labels]) ** 2).sum(dim=1).mean()
    assert torch.allclose(squared_error_loss(outputs, labels), expected)
    weights = dict(model.named_parameters())
    direct, functional = batch_gradient(model, images, labels), functional_gradient(model, weights, images, labels)
    assert all(torch.allclose(direct[k], functional[k]) for k in direct)


def test_cross_entropy_models_keep_their_loss():
    from fedleak.training import client_loss

    assert loss_of(ModelSpec("linreg", 1, 6, 4).build()) is client_loss


@pytest.mark.slow
def test_thesis_linreg_quick_one_image_leaks_several_do_not(tmp_path, capsys):
    assert main(["reproduce", "thesis-linreg", "--quick", "--out", str(tmp_path)]) == 0
    rows = _rows(tmp_path)
    assert len(rows) == 10 and all(row["fedleak"] != "not measured" for row in rows.values())
    assert rows["DLG, B = 2"]["paper"].startswith("DLG fails for B > 1")
    assert all("run(s)" in row["setting"] or "batch(es)" in row["setting"] for row in rows.values())
    assert all("iterations" in row["setting"] or "float64" in row["setting"] for row in rows.values())
    # The closed form is exact to float precision; DLG recovers the one image but not a batch of the scalar model.
    assert _psnr(rows["closed form, one CIFAR-100 image"]["fedleak"]) > 100
    assert _psnr(rows["DLG, one CIFAR-100 image"]["fedleak"]) > 60
    for batch in (2, 4, 8):
        cell = rows[f"DLG, B = {batch}"]["fedleak"]
        assert _psnr(cell) < 25 and "weight-gradient rank 1;" in cell
        assert f"3073 equations vs {batch * 3072} unknowns" in cell
    assert (tmp_path / "linreg_single.png").stat().st_size > 0
    assert (tmp_path / "linreg_batches.png").stat().st_size > 0
    assert "took " in capsys.readouterr().out


@pytest.mark.slow
def test_thesis_batch_sizes_quick_psnr_falls_with_the_batch(tmp_path):
    assert main(["reproduce", "thesis-batch-sizes", "--quick", "--out", str(tmp_path)]) == 0
    rows = _rows(tmp_path)
    assert len(rows) == 16  # 2 datasets × 2 attacks × B = 1, 2, 4, 8
    measured = {name: row for name, row in rows.items() if row["fedleak"] != "not measured"}
    assert sorted(measured) == sorted(f"{a} {d} B = {b}" for a in ("DLG", "iDLG") for d in ("MNIST", "CIFAR-100")
                                      for b in (1, 2))
    assert all("L-BFGS iterations" in row["setting"] and "image" in row["setting"] for row in measured.values())
    assert _psnr(measured["iDLG MNIST B = 1"]["fedleak"]) > 30
    for attack in ("DLG", "iDLG"):
        assert _psnr(measured[f"{attack} CIFAR-100 B = 2"]["fedleak"]) < _psnr(
            measured[f"{attack} CIFAR-100 B = 1"]["fedleak"])
    for dataset in ("mnist", "cifar100"):
        assert (tmp_path / f"batch_sizes_{dataset}.png").stat().st_size > 0


@pytest.mark.slow
def test_architectures_quick_the_closed_form_inverts_the_linear_models(tmp_path):
    assert main(["reproduce", "architectures", "--quick", "--out", str(tmp_path)]) == 0
    rows = _rows(tmp_path)
    from fedleak.models import list_models

    assert sorted(rows) == sorted(list_models())
    run = {name: row for name, row in rows.items() if row["fedleak"] != "not run with --quick"}
    assert sorted(run) == sorted(["linreg-mse", "mlp", "lenet", "rconv-lenet"])
    for name in ("linreg-mse", "mlp"):
        cell = run[name]["fedleak"]
        init, trained = (float(v) for v in re.search(r"linear (\S+) → (\S+) dB", cell).groups())
        assert init > 100 and trained > 100, cell
    assert all("held-out accuracy" in row["setting"] and "parameters" in row["setting"] for row in run.values())
    assert (tmp_path / "architectures.png").stat().st_size > 0
