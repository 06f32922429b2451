"""The standard torchvision datasets, read from ``data.path`` (the torchvision ``root``; default ``data``).

Before torchvision is asked, the files it needs are checked here, so a missing file is one line that says which
files to put where, instead of torchvision's "Dataset not found". Facts this relies on:

* MNIST / Fashion-MNIST only check that the four decompressed IDX files exist under ``root/<Class>/raw/``.
* CIFAR verifies the md5 of every batch file; a partial copy never loads (use source ``npz`` or ``folder`` for
  partial data). The ``.tar.gz`` placed in ``root`` with ``download: true`` is extracted without a download.
* LFW no longer downloads at all; ``LFWPeople`` (funneled images, people view, identities as classes) needs the
  archive, its extracted folder and the list files under ``root/lfw-py/``. The extracted ``lfw_funneled`` folder
  (one sub-folder per person) also works as source ``folder`` without the list files.

``download: true`` without internet fails with one line naming the files to place instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedleak.data.files import read_image, stack_images
from fedleak.data.imageset import ImageSet, build_image_set, dataset_info
from fedleak.errors import UserError

_IDX = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]

#: dataset → (torchvision class name, files relative to root that must exist, where to get them).
REQUIRED: dict[str, tuple[str, list[str], str]] = {
    "mnist": ("MNIST", [f"MNIST/raw/{name}" for name in _IDX], "the decompressed IDX files of MNIST"),
    "fashion_mnist": (
        "FashionMNIST", [f"FashionMNIST/raw/{name}" for name in _IDX], "the decompressed IDX files of Fashion-MNIST"
    ),
    "cifar10": (
        "CIFAR10",
        [f"cifar-10-batches-py/{n}" for n in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]],
        "the extracted cifar-10-python.tar.gz (or the .tar.gz itself in the root, with data.download: true)",
    ),
    "cifar100": (
        "CIFAR100",
        [f"cifar-100-python/{n}" for n in ["train", "test", "meta"]],
        "the extracted cifar-100-python.tar.gz (or the .tar.gz itself in the root, with data.download: true)",
    ),
    "lfw": (
        "LFWPeople",
        [f"lfw-py/{n}" for n in ["lfw-funneled.tgz", "lfw_funneled", "peopleDevTrain.txt", "peopleDevTest.txt",
                                  "lfw-names.txt"]],
        "LFW funneled (archive and extracted folder) and its list files; or use source folder on lfw_funneled/",
    ),
}


def missing_files(dataset: str, root: Path) -> list[Path]:
    return [root / relative for relative in REQUIRED[dataset][1] if not (root / relative).exists()]


def _missing_message(dataset: str, missing: list[Path], why: str) -> str:
    what = REQUIRED[dataset][2]
    shown = ", ".join(str(p) for p in missing[:4]) + (f" (+{len(missing) - 4} more)" if len(missing) > 4 else "")
    return f"data.path: torchvision {REQUIRED[dataset][0]} {why}; put {what} at: {shown}"


def load_torchvision(dataset: str, root: Path, split: str | None, download: bool, image_size: int | None) -> ImageSet:
    chosen = split or "train"
    missing = missing_files(dataset, root)
    if dataset == "lfw" and download:
        raise UserError(_missing_message(dataset, missing or [root / "lfw-py"],
                                         "cannot download (LFW's automatic download was withdrawn); set "
                                         "data.download: false"))
    if missing and not download:
        raise UserError(_missing_message(dataset, missing, "files are missing"))

    # lazy (start-up): torchvision's datasets take seconds to import; only this source needs them
    import torchvision.datasets as tvd  # slow import; only when this source is used

    class_name = REQUIRED[dataset][0]
    try:
        if dataset == "lfw":
            data = tvd.LFWPeople(str(root), split=chosen, image_set="funneled", download=False)
        else:
            data = getattr(tvd, class_name)(str(root), train=chosen == "train", download=download)
    except Exception as exc:  # network, md5 and format failures all reach the user the same way
        why = "download failed (no internet?)" if download else "could not read the files"
        detail = " ".join(str(exc).split())[:160]
        raise UserError(_missing_message(dataset, missing_files(dataset, root) or [root], why)
                        + f" [{exc.__class__.__name__}: {detail}]") from None

    origin = f"torchvision {class_name} {chosen} from {root}"
    if dataset == "lfw":
        info = dataset_info(dataset)
        size = image_size or info.native_size
        images = stack_images([read_image(Path(p), info.channels) for p in data.data], size)
        labels = np.asarray(data.targets, dtype=np.int64)
        return build_image_set(dataset, images, labels, len(data.class_to_idx), size, origin, str(root))
    images = np.asarray(data.data)
    images = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    labels = np.asarray(data.targets, dtype=np.int64)
    return build_image_set(dataset, images, labels, None, image_size, origin, str(root))
