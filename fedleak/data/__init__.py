"""Real-image data sources and their partition into client shards.

>>> from fedleak.config.schema import DataConfig
>>> images = load_images(DataConfig(dataset="mnist", split="test"))
>>> images.get([0, 1, 2])[1].tolist()
[7, 2, 1]
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fedleak.config.schema import DataConfig
from fedleak.data.batches import client_batch_indices
from fedleak.data.bundled import load_bundled
from fedleak.data.files import load_folder, load_npz, load_single_image
from fedleak.data.imageset import DATASETS, DatasetInfo, ImageSet, with_num_classes
from fedleak.data.partitioning import PARTITIONS, label_histogram, partition, split_eval
from fedleak.registry import Registry

__all__ = [
    "DATASETS",
    "DATA_SOURCES",
    "PARTITIONS",
    "DatasetInfo",
    "ImageSet",
    "client_batch_indices",
    "label_histogram",
    "load_images",
    "partition",
    "split_eval",
]


def load_images(cfg: DataConfig, base_dir: Path | None = None) -> ImageSet:
    """Load the images a scenario's ``data`` section names.

    Args:
        cfg: The ``data`` section.
        base_dir: Folder that relative ``data.path`` values resolve against (the scenario file's folder);
            default: the current directory.

    Returns:
        The images at the dataset's channels and ``cfg.image_size`` (or native size), with labels.

    Raises:
        UserError: A missing file, wrong array names or shapes, a label out of range, a split the source lacks.
    """
    images = DATA_SOURCES.get(cfg.source)(cfg, _resolve(cfg.path, base_dir), base_dir)
    return with_num_classes(images, cfg.num_classes, cfg.path or f"{cfg.source} {cfg.dataset}")


#: (the data section, its resolved ``path`` or None, the scenario's folder) → the images.
SourceLoader = Callable[[DataConfig, Path | None, Path | None], ImageSet]
#: One loader per ``data.source``; the schema's source names must all be here (a test checks).
DATA_SOURCES: Registry[SourceLoader] = Registry("data source")


@DATA_SOURCES.register("bundled")
def _bundled(cfg: DataConfig, path: Path | None, base_dir: Path | None) -> ImageSet:
    return load_bundled(cfg.dataset, cfg.split, cfg.image_size)


@DATA_SOURCES.register("npz")
def _npz(cfg: DataConfig, path: Path | None, base_dir: Path | None) -> ImageSet:
    return load_npz(cfg.dataset, path, cfg.image_size, cfg.non_square)


@DATA_SOURCES.register("folder")
def _folder(cfg: DataConfig, path: Path | None, base_dir: Path | None) -> ImageSet:
    return load_folder(cfg.dataset, path, cfg.image_size, cfg.non_square)


@DATA_SOURCES.register("image")
def _image(cfg: DataConfig, path: Path | None, base_dir: Path | None) -> ImageSet:
    assert cfg.label is not None  # the schema requires it for this source
    return load_single_image(cfg.dataset, path, cfg.label, cfg.image_size, cfg.non_square, cfg.num_classes)


@DATA_SOURCES.register("torchvision")
def _torchvision(cfg: DataConfig, path: Path | None, base_dir: Path | None) -> ImageSet:
    # lazy (start-up): torchvision's datasets take seconds to import; only this source needs them
    from fedleak.data.tv import load_torchvision  # torchvision imports slowly; only when asked for

    return load_torchvision(cfg.dataset, path or _resolve("data", base_dir), cfg.split, cfg.download, cfg.image_size)


def _resolve(path: str | None, base_dir: Path | None) -> Path | None:
    if path is None:
        return None
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else (base_dir or Path.cwd()) / candidate
