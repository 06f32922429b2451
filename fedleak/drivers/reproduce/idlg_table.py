"""iDLG's tables (Zhao, Mopuri, Bilen 2020, arXiv 2001.02610): label accuracy and the share of runs at
MSE ≤ 1e-3, DLG vs iDLG, on MNIST, CIFAR-100 and LFW.

Ours: the first N bundled test images of each dataset at B = 1, one freshly initialised DLG LeNet (sigmoid, the
paper's initialisation) per image with seed = image index, ``dlg`` then ``idlg`` on the same gradient. The bundled
LFW faces are grey (scikit-image's subset), repeated to three channels.
"""

from __future__ import annotations

from pathlib import Path

import torch

from fedleak.config.schema import DataConfig
from fedleak.drivers.reproduce.base import Entry, Measured, PaperFigure, register_entry

DATASETS = {"mnist": "MNIST", "cifar100": "CIFAR-100", "lfw": "LFW"}
ATTACKS = {"dlg": "DLG", "idlg": "iDLG"}
PAPER_LABELS = {"dlg": ("89.9", "83.3", "79.1"), "idlg": ("100", "100", "100")}
PAPER_MSE = {"dlg": ("76", "65", "51"), "idlg": ("88", "82", "90")}
PAPER_SETTING = "B = 1, LeNet"
QUICK = (2, 50)  # images per dataset, iterations
FULL = (10, 300)


def paper_figures() -> tuple[PaperFigure, ...]:
    figures = []
    for attack, attack_title in ATTACKS.items():
        for i, title in enumerate(DATASETS.values()):
            figures.append(PaperFigure(f"label accuracy {attack_title} {title}", f"{PAPER_LABELS[attack][i]} %",
                                       "Table 1", PAPER_SETTING))
            figures.append(PaperFigure(f"MSE ≤ 1e-3 {attack_title} {title}", f"≈ {PAPER_MSE[attack][i]} %",
                                       "Table 2", PAPER_SETTING))
    return tuple(figures)


def attack_image(attack: str, image: torch.Tensor, label: torch.Tensor, num_classes: int, seed: int,
                 iterations: int) -> tuple[bool, bool]:
    """One attack on one image: (label right, MSE ≤ 1e-3)."""
    from fedleak.attacks import get_attack
    from fedleak.metrics import score_batch
    from fedleak.metrics.score import MSE_THRESHOLD
    from fedleak.observe import observe
    from fedleak.training import batch_gradient
    from fedleak.types import ModelSpec, ThreatModel

    spec = ModelSpec("lenet", image.shape[1], image.shape[-1], num_classes)
    torch.manual_seed(seed)
    model = spec.build()
    update = batch_gradient(model, image, label)
    observation = observe(spec, model.state_dict(), update, "gradient", ThreatModel(), {"batch_size": 1})
    result = get_attack(attack, seed=seed, iterations=iterations)(observation)
    score = score_batch(result.images, result.labels, image, label)
    return bool(score.label_accuracy), score.mse is not None and score.mse <= MSE_THRESHOLD


def measure_dataset(dataset: str, count: int, iterations: int) -> dict[str, tuple[int, int, int]]:
    """Per attack: (labels right, runs at MSE ≤ 1e-3, runs) on the first ``count`` bundled test images."""
    from fedleak.data import load_images

    image_set = load_images(DataConfig(dataset=dataset, split="test"))
    n = min(count, len(image_set))
    hits = {attack: [0, 0] for attack in ATTACKS}
    for index in range(n):
        image, label = image_set.get([index])
        for attack in ATTACKS:
            label_ok, close = attack_image(attack, image, label, image_set.num_classes, index, iterations)
            hits[attack][0] += label_ok
            hits[attack][1] += close
            print(f"idlg-table {dataset} image {index}: {attack} label {'ok' if label_ok else 'wrong'}, "
                  f"MSE ≤ 1e-3 {'yes' if close else 'no'}", flush=True)
    return {attack: (labels, close, n) for attack, (labels, close) in hits.items()}


def measure(quick: bool, out_dir: Path) -> dict[str, Measured]:
    count, iterations = QUICK if quick else FULL
    measured = {}
    for dataset, title in DATASETS.items():
        counts = measure_dataset(dataset, count, iterations)
        for attack, attack_title in ATTACKS.items():
            labels, close, n = counts[attack]
            setting = (f"{n} bundled test images, B = 1, lenet (sigmoid), {iterations} L-BFGS iterations"
                       + (", --quick" if quick else ""))
            measured[f"label accuracy {attack_title} {title}"] = Measured(f"{100 * labels / n:.0f} % ({labels}/{n})",
                                                                          setting)
            measured[f"MSE ≤ 1e-3 {attack_title} {title}"] = Measured(f"{100 * close / n:.0f} % ({close}/{n})",
                                                                      setting)
    return measured


ENTRY = register_entry(Entry(
    name="idlg-table",
    title="iDLG: label accuracy and share of runs at MSE ≤ 1e-3, DLG vs iDLG",
    paper="Zhao, Mopuri, Bilen 2020, iDLG: Improved Deep Leakage from Gradients, arXiv 2001.02610",
    figures=paper_figures(),
    measure=measure,
))
