"""R-CONV's architecture × activation grid (Eltaras, Malluhi, Savino, Di Carlo, Qayyum, "R-CONV: An Analytical
Approach for Efficient Data Reconstruction via Convolutional Gradients", WISE 2024, arXiv 2406.04227).

The paper's five networks (``rconv-lenet``, ``rconv-lenet-o``, ``rconv-lenet-4relu``, ``rconv-lenet-allrelu``,
``o-cnn6``) × ReLU, LeakyReLU, Tanh, Sigmoid (the model factories' ``activation``: the layers the paper varies; the
fixed ones stay LeakyReLU(0.2)), at B = 1, one freshly initialised network per image (seed = image index), float32
client. Two modes on the same observed gradient, side by side:

- *as published*: ``rconv`` with ``fill_with_forward=False`` — gradient constraints alone in every layer but the
  first, whose forward constraints are used when its activation is invertible. Departure: the first layer stacks its
  gradient and forward constraints instead of solving the forward ones alone (see ``RConv.Config.first_layer``: the
  paper's square forward system is ill-conditioned in float32);
- *with R-GAP's forward constraints*: ``rconv``'s default, forward rows (after a ReLU, of live units only) fill what
  the gradient rows leave open in every layer (R-GAP: Zhu & Blaschko, ICLR 2021, arXiv 2010.07733).

Images: ``FULL_COUNT`` (20) MNIST test images from 0 and CIFAR-10 test images from 100 — not the paper's first 100,
because ``rconv``'s ReLU tolerance (``dead_tol``) was chosen on CIFAR-10 test images 0–99 (the tuning set), and 20
per dataset keep the 160 attacks per image pair (5 networks × 4 activations × 2 modes × 2 datasets) within the
30-minute budget on a shared 2-core machine.
The paper's per-cell numbers are not quoted here; each row carries the paper's qualitative claim instead.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from fedleak.attacks import get_attack
from fedleak.drivers.reproduce.base import Entry, Measured, PaperFigure, register_entry, write_rows
from fedleak.drivers.reproduce.conv_images import (
    TITLES,
    load_test_images,
    observe_one,
    psnr_db,
    success_share,
    summarise,
)
from fedleak.report.figures import new_figure, save_figure

ARCHITECTURES = ("rconv-lenet", "rconv-lenet-o", "rconv-lenet-4relu", "rconv-lenet-allrelu", "o-cnn6")
ACTIVATIONS = {"relu": "ReLU", "leaky_relu": "LeakyReLU", "tanh": "Tanh", "sigmoid": "Sigmoid"}
MODES = {"published": {"fill_with_forward": False}, "forward": {"fill_with_forward": True}}
MODE_TITLES = {"published": "as published", "forward": "with R-GAP's forward rows"}
#: (dataset, first test image); CIFAR-10 starts after the images ``dead_tol`` was tuned on.
DATASETS = (("mnist", 0), ("cifar10", 100))
FULL_COUNT = 20
QUICK_COUNT = 2
#: A float32 bias gradient below this means a saturated softmax: the update carries (almost) no signal.
SATURATED = 1e-6

WHERE = "abstract; architectures as described with the authors' code"
PAPER_SETTING = "B = 1, first 100 MNIST / CIFAR-10 test images"
CLAIMS = {
    "rconv-lenet": "reconstructs analytically from gradient constraints, also through ReLU (non-invertible)",
    "rconv-lenet-o": "fewer filters still suffice for gradient constraints alone",
    "rconv-lenet-4relu": "reconstructs with ReLU between all four conv layers (22 filters in layer 2)",
    "rconv-lenet-allrelu": "ReLU in the first layer too: reconstructs, with many more first-layer filters (77)",
    "o-cnn6": "R-GAP's CNN6 with 3 instead of 128 last-layer filters still reconstructs",
}


def figure_name(arch: str, activation: str, dataset: str) -> str:
    return f"{arch} {ACTIVATIONS[activation]} {TITLES[dataset]}"


def paper_figures() -> tuple[PaperFigure, ...]:
    return tuple(
        PaperFigure(figure_name(arch, act, dataset), f"qualitative: {CLAIMS[arch]}", WHERE, PAPER_SETTING)
        for dataset, _ in DATASETS for arch in ARCHITECTURES for act in ACTIVATIONS
    )


def attack_both_modes(arch: str, activation: str, image, label, seed: int) -> dict[str, tuple[float, float]]:
    """Per mode: (PSNR, largest |FC bias gradient|) of ``rconv`` on one image's update."""
    observation = observe_one(arch, image, label, activation, seed)
    out = {}
    for mode, params in MODES.items():
        result = get_attack("rconv", seed=seed, **params)(observation)
        out[mode] = (psnr_db(result.images, image), float(result.diagnostics.get("fc_bias_grad_max", math.nan)))
    return out


def measure_dataset(dataset: str, count: int, offset: int) -> tuple[list[dict], str]:
    """One row per (image, architecture, activation, mode), and where the images came from."""
    batch = load_test_images(dataset, count, offset)
    rows = []
    for k, index in enumerate(batch.indices):
        image, label = batch.images[k : k + 1], batch.labels[k : k + 1]
        for arch in ARCHITECTURES:
            for act in ACTIVATIONS:
                for mode, (psnr, signal) in attack_both_modes(arch, act, image, label, index).items():
                    rows.append({"dataset": dataset, "index": index, "architecture": arch, "activation": act,
                                 "mode": mode, "psnr_db": psnr, "fc_bias_grad_max": signal})
        print(f"rconv-grid {dataset} image {index} done ({k + 1}/{len(batch.indices)})", flush=True)
    return rows, batch.source


def cell_text(rows: list[dict]) -> str:
    """Both modes side by side, with the failures a saturated softmax explains."""
    parts = []
    for mode, title in MODE_TITLES.items():
        mine = [r for r in rows if r["mode"] == mode]
        values = [r["psnr_db"] for r in mine]
        failed = [r for r in mine if not (r["psnr_db"] >= 20.0)]
        saturated = sum(1 for r in failed if r["fc_bias_grad_max"] < SATURATED)
        note = f" ({saturated} of the failures: saturated softmax)" if saturated else ""
        parts.append(f"{title}: {summarise(values)}{note}")
    return " · ".join(parts)


def measure(quick: bool, out_dir: Path) -> dict[str, Measured]:
    count = QUICK_COUNT if quick else FULL_COUNT
    datasets = DATASETS[:1] if quick else DATASETS
    measured: dict[str, Measured] = {}
    all_rows = []
    for dataset, offset in datasets:
        rows, source = measure_dataset(dataset, count, offset)
        all_rows += rows
        n = len({r["index"] for r in rows})
        setting = (f"{n} {source}, B = 1, one network per image (seed = index), float32 client, rconv in float64; "
                   f"PSNR peak 1, exact counted as 150 dB in the mean" + (", --quick" if quick else ""))
        for arch in ARCHITECTURES:
            for act in ACTIVATIONS:
                cell = [r for r in rows if r["architecture"] == arch and r["activation"] == act]
                measured[figure_name(arch, act, dataset)] = Measured(cell_text(cell), setting)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_rows(all_rows, out_dir / "psnr.csv")
    plot_grid(all_rows, out_dir / "rconv_grid.png")
    return measured


def plot_grid(rows: list[dict], path: Path) -> None:
    """Share of images ≥ 20 dB per architecture × activation: one panel per dataset and mode."""
    datasets = sorted({r["dataset"] for r in rows}, key=[d for d, _ in DATASETS].index)
    fig = new_figure((4.6 * len(MODES), 3.4 * len(datasets)))
    axes = fig.subplots(len(datasets), len(MODES), squeeze=False)
    for i, dataset in enumerate(datasets):
        n = len({r["index"] for r in rows if r["dataset"] == dataset})
        for j, mode in enumerate(MODES):
            share = np.array([[success_share([r["psnr_db"] for r in rows if r["dataset"] == dataset
                                              and r["mode"] == mode and r["architecture"] == arch
                                              and r["activation"] == act]) for act in ACTIVATIONS]
                              for arch in ARCHITECTURES])
            ax = axes[i][j]
            ax.imshow(share, vmin=0, vmax=1, cmap="viridis")
            for (a, b), value in np.ndenumerate(share):
                ax.text(b, a, f"{100 * value:.0f}%", ha="center", va="center", color="w" if value < 0.6 else "k")
            ax.set_xticks(range(len(ACTIVATIONS)), list(ACTIVATIONS.values()), fontsize=8)
            ax.set_yticks(range(len(ARCHITECTURES)), ARCHITECTURES, fontsize=8)
            ax.set_title(f"{TITLES[dataset]}, {MODE_TITLES[mode]} ({n} images)", fontsize=9)
    fig.suptitle("rconv: share of images ≥ 20 dB (B = 1, fresh network per image)", fontsize=10)
    save_figure(fig, path)


ENTRY = register_entry(Entry(
    name="rconv-grid",
    title="R-CONV: PSNR per architecture × activation, as published and with R-GAP's forward constraints",
    paper="Eltaras, Malluhi, Savino, Di Carlo, Qayyum 2024, R-CONV: An Analytical Approach for Efficient Data "
          "Reconstruction via Convolutional Gradients, arXiv 2406.04227",
    figures=paper_figures(),
    measure=measure,
))
