"""The thesis' batch-size experiment: DLG and iDLG against the batch size, on MNIST and CIFAR-100.

Source: a thesis on Deep Leakage from Gradients (DLG: Zhu, Liu, Han 2019, arXiv 1906.08935; iDLG: Zhao, Mopuri,
Bilen 2020, arXiv 2001.02610) that plots the final gradient-matching loss and the reconstruction quality against the
batch size. We do not have its numbers: the paper column states its qualitative claim ("loss grows with B, PSNR
falls"); no number in it is the thesis'.

Ours: DLG's LeNet (sigmoid, ``lenet``, fresh initialisation per run with seed = run), batches of consecutive bundled
test images (run r of batch size B takes images r·B … r·B + B − 1), the one-batch gradient of the client loss, then
fedleak's ``dlg`` (labels learned) and ``idlg`` (labels inferred; label counts for B > 1) on the same gradient.
Per batch size: mean PSNR over the runs' images (after one-to-one matching) and the mean final matching distance.

The distance is reported relative to ``Σ |g|²`` of the observed update (the distance of an all-zero candidate),
because the update's size itself changes with B and with the image; a converged run stops once it falls under
2e-8 (fedleak's early stop), so a small value means "matched", a large one "stuck". Departures from the thesis'
plain loop: fedleak's attacks stop early, redraw stalled starts and cap L-BFGS steps (``attacks/dlg.py``); fewer
iterations than DLG's 300 keep the full run within 30 minutes on two cores. No setting was tuned on these images
(DLG's defaults were chosen on CIFAR-10 test images 0–19).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from fedleak.config.schema import DataConfig
from fedleak.data import load_images
from fedleak.drivers.reproduce.attack_runs import AttackRun, attack_batch, mean
from fedleak.drivers.reproduce.base import Entry, Measured, PaperFigure, register_entry
from fedleak.report.figures import new_figure, save_figure
from fedleak.types import ModelSpec

DATASETS = {"mnist": "MNIST", "cifar100": "CIFAR-100"}
ATTACKS = {"dlg": "DLG", "idlg": "iDLG"}
BATCH_SIZES = (1, 2, 4, 8)
#: (batch sizes, runs per batch size, L-BFGS iterations)
QUICK = ((1, 2), 1, 20)
FULL = (BATCH_SIZES, 3, 60)
CLAIM = "loss grows with B, PSNR falls"
WHERE = "thesis, qualitative; its numbers are not known to us"


def figure_name(dataset: str, attack: str, batch: int) -> str:
    return f"{ATTACKS[attack]} {DATASETS[dataset]} B = {batch}"


def paper_figures() -> tuple[PaperFigure, ...]:
    return tuple(PaperFigure(figure_name(d, a, b), CLAIM, WHERE, "LeNet")
                 for d in DATASETS for a in ATTACKS for b in BATCH_SIZES)


def runs_for(dataset: str, attack: str, batch: int, runs: int, iterations: int) -> list[AttackRun]:
    """``runs`` attacks on batches of ``batch`` consecutive bundled test images."""
    images_set = load_images(DataConfig(dataset=dataset, split="test"))
    spec = ModelSpec("lenet", images_set.channels, images_set.image_size, images_set.num_classes)
    results = []
    for run in range(runs):
        images, labels = images_set.get([(run * batch + k) % len(images_set) for k in range(batch)])
        results.append(attack_batch(attack, spec, images, labels, run, iterations=iterations))
    return results


def summarise(results: list[AttackRun]) -> tuple[float, float, int]:
    """(mean PSNR, mean relative final matching distance, failed runs)."""
    failed = sum(not math.isfinite(r.psnr) for r in results)
    return mean([r.psnr for r in results]), mean([r.relative_loss for r in results]), failed


def measure_curves(batches: tuple[int, ...], runs: int, iterations: int) -> dict[tuple[str, str, int], tuple]:
    """(dataset, attack, B) → (mean PSNR, mean relative distance, failed runs)."""
    curves = {}
    for dataset in DATASETS:
        for batch in batches:
            for attack in ATTACKS:
                curves[dataset, attack, batch] = summarise(runs_for(dataset, attack, batch, runs, iterations))
                psnr, loss, _ = curves[dataset, attack, batch]
                print(f"thesis-batch-sizes {dataset} {attack} B={batch}: {psnr:.1f} dB, distance {loss:.1e}",
                      flush=True)
    return curves


def plot_dataset(dataset: str, curves: dict, batches: tuple[int, ...], runs: int, iterations: int,
                 out_dir: Path) -> None:
    figure = new_figure((9, 3.4))
    loss_axis, psnr_axis = figure.subplots(1, 2)
    for attack, title in ATTACKS.items():
        loss_axis.plot(batches, [curves[dataset, attack, b][1] for b in batches], marker="o", label=title)
        psnr_axis.plot(batches, [curves[dataset, attack, b][0] for b in batches], marker="o", label=title)
    loss_axis.set_yscale("log")
    loss_axis.set_ylabel("final matching distance / Σ|g|²")
    psnr_axis.set_ylabel("mean PSNR (dB)")
    for axis in (loss_axis, psnr_axis):
        axis.set_xlabel("batch size B")
        axis.set_xticks(batches)
        axis.legend(fontsize=8)
    figure.suptitle(f"{DATASETS[dataset]}, sigmoid LeNet, {runs} run(s) per B, {iterations} L-BFGS iterations; "
                    "attacker knows the weights and B, not the labels", fontsize=8)
    save_figure(figure, out_dir / f"batch_sizes_{dataset}.png")


def measure(quick: bool, out_dir: Path) -> dict[str, Measured]:
    torch.set_num_threads(1)
    batches, runs, iterations = QUICK if quick else FULL
    curves = measure_curves(batches, runs, iterations)
    measured = {}
    for (dataset, attack, batch), (psnr, loss, failed) in curves.items():
        note = f"; {failed} run(s) failed" if failed else ""
        measured[figure_name(dataset, attack, batch)] = Measured(
            f"PSNR {psnr:.1f} dB; final distance {loss:.1e} of Σ|g|²{note}",
            f"{runs} run(s) × {batch} bundled test image(s), {runs * batch} images; sigmoid lenet; {iterations} "
            f"L-BFGS iterations" + (", --quick" if quick else ""))
    for dataset in DATASETS:
        plot_dataset(dataset, curves, batches, runs, iterations, out_dir)
    return measured


ENTRY = register_entry(Entry(
    name="thesis-batch-sizes",
    title="DLG and iDLG against the batch size: final matching loss and PSNR, MNIST and CIFAR-100",
    paper="a thesis on DLG (Zhu, Liu, Han 2019, arXiv 1906.08935) and iDLG (Zhao, Mopuri, Bilen 2020, arXiv "
          "2001.02610); paper column qualitative",
    figures=paper_figures(),
    measure=measure,
))
