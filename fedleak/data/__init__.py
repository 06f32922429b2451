"""Real-image data sources and their partition into client shards.

>>> from fedleak.config.schema import DataConfig
>>> images = load_images(DataConfig(dataset="mnist", split="test"))
>>> images.get([0, 1, 2])[1].tolist()
[7, 2, 1]
"""

from __future__ import annotations

from pathlib import Path

from fedleak.config.schema import DataConfig
from fedleak.data.batches import client_batch_indices
from fedleak.data.bundled import load_bundled
from fedleak.data.files import load_folder, load_npz, load_single_image
from fedleak.data.imageset import DATASETS, DatasetInfo, ImageSet
from fedleak.data.partitioning import label_histogram, partition, split_eval

__all__ = [
    "DATASETS",
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
    path = _resolve(cfg.path, base_dir)
    if cfg.source == "bundled":
        return load_bundled(cfg.dataset, cfg.split, cfg.image_size)
    if cfg.source == "npz":
        return load_npz(cfg.dataset, path, cfg.image_size)
    if cfg.source == "folder":
        return load_folder(cfg.dataset, path, cfg.image_size)
    if cfg.source == "image":
        assert cfg.label is not None  # the schema requires it for this source
        return load_single_image(cfg.dataset, path, cfg.label, cfg.image_size)
    if cfg.source == "torchvision":
        from fedleak.data.tv import load_torchvision  # torchvision imports slowly; only when asked for

        return load_torchvision(cfg.dataset, path or _resolve("data", base_dir), cfg.split, cfg.download,
                                cfg.image_size)
    raise AssertionError(f"unhandled data.source {cfg.source!r}")


def _resolve(path: str | None, base_dir: Path | None) -> Path | None:
    if path is None:
        return None
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else (base_dir or Path.cwd()) / candidate
