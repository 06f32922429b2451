"""The in-memory image set every data source produces, the dataset catalogue, and shared conversions.

Conventions (the same for every source):

* Images keep their original pixel values as long as possible: ``ImageSet.images`` is ``uint8`` (0–255) when the
  source is 8-bit and no resize was needed, and ``float32`` in [0, 1] otherwise (resized images, float sources).
  :meth:`ImageSet.get` always returns ``float32`` in [0, 1], without normalisation.
* Every image set of a dataset has the catalogue's channel count and the side ``data.image_size`` or, when that is
  unset, the catalogue's ``native_size``; resizing is antialiased bilinear.
* LFW has no fixed label space (identities), so its ``num_classes`` comes from the source.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fedleak.errors import UserError


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset's images look like once loaded.

    Attributes:
        channels: 1 (grey) or 3 (RGB).
        native_size: Side length used when ``data.image_size`` is unset.
        num_classes: Size of the label space; ``None`` when the source defines it (LFW identities).
    """

    channels: int
    native_size: int
    num_classes: int | None


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(channels=1, native_size=28, num_classes=10),
    "fashion_mnist": DatasetInfo(channels=1, native_size=28, num_classes=10),
    "cifar10": DatasetInfo(channels=3, native_size=32, num_classes=10),
    "cifar100": DatasetInfo(channels=3, native_size=32, num_classes=100),
    # LFW images come at 250 px (torchvision), 80 px (the fixture) or 25 px (scikit-image); 32 px is a common
    # size in gradient-leakage papers and is divisible by 4, as the DLG LeNet needs.
    "lfw": DatasetInfo(channels=3, native_size=32, num_classes=None),
}


def dataset_info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise UserError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}") from None


@dataclass
class ImageSet:
    """Images with integer labels, held in memory.

    Attributes:
        name: Dataset name (a key of :data:`DATASETS`).
        images: N×C×H×W, ``uint8`` (original 8-bit pixels) or ``float32`` in [0, 1] (resized or float sources).
        labels: N class indices, ``int64``.
        num_classes: Size of the label space (at least ``labels.max() + 1``).
        source: Human-readable origin, e.g. ``"foolbox 3.3.4 PNGs (MNIST test 0-19)"``.
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    source: str

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[2] != self.images.shape[3]:
            raise ValueError(f"images must be N×C×H×W with H == W, got {tuple(self.images.shape)}")
        if self.images.dtype not in (torch.uint8, torch.float32):
            raise ValueError(f"images must be uint8 or float32, got {self.images.dtype}")
        if self.labels.shape != (self.images.shape[0],) or self.labels.dtype != torch.int64:
            raise ValueError(f"labels must be int64 of shape ({self.images.shape[0]},), got "
                             f"{self.labels.dtype} {tuple(self.labels.shape)}")

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def get(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (float32 in [0, 1], B×C×H×W) and labels (int64, B) at ``indices``, in that order."""
        index = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        images = self.images[index]
        images = images.float() / 255.0 if images.dtype == torch.uint8 else images.clone()
        return images, self.labels[index].clone()


def to_nchw(array: np.ndarray, where: str) -> np.ndarray:
    """N×H×W (grey) or N×H×W×C (C = 1 or 3) → N×C×H×W, same dtype."""
    if array.ndim == 3:
        return array[:, None]
    if array.ndim == 4 and array.shape[-1] in (1, 3):
        return np.ascontiguousarray(array.transpose(0, 3, 1, 2))
    raise UserError(f"{where}: images must be N×H×W (grey) or N×H×W×3 (RGB), got shape {array.shape}")


def match_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """Grey → RGB by repeating the channel; RGB → grey with the ITU-R 601 luma weights (as PIL's ``convert('L')``)."""
    have = images.shape[1]
    if have == channels:
        return images
    if have == 1 and channels == 3:
        return np.repeat(images, 3, axis=1)
    if have == 3 and channels == 1:
        weights = np.array([0.299, 0.587, 0.114], dtype=np.float64).reshape(1, 3, 1, 1)
        grey = (images.astype(np.float64) * weights).sum(axis=1, keepdims=True)
        return np.round(grey).astype(np.uint8) if images.dtype == np.uint8 else grey.astype(images.dtype)
    raise ValueError(f"cannot convert {have} channels to {channels}")


def to_tensor_images(images: np.ndarray, size: int) -> torch.Tensor:
    """N×C×H×W uint8 or float array → tensor at side ``size``.

    Kept ``uint8`` when nothing changes; otherwise resized (antialiased bilinear) in float32 and clamped to [0, 1].
    """
    if images.dtype == np.uint8 and images.shape[-2:] == (size, size):
        # A copy: loaders cache their raw arrays, and an image set must never share memory with a cache.
        return torch.tensor(images)
    tensor = torch.from_numpy(np.ascontiguousarray(images)).float()
    if images.dtype == np.uint8:
        tensor = tensor / 255.0
    if tensor.shape[-2:] != (size, size):
        tensor = F.interpolate(tensor, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return tensor.clamp_(0.0, 1.0).contiguous()


def check_labels(labels: np.ndarray, num_classes: int, where: str) -> torch.Tensor:
    """Labels as int64 tensor, or a UserError naming the first label outside 0..num_classes-1."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"{where}: labels must be a 1-D integer array, got {labels.dtype} of shape {labels.shape}")
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.size:
        raise UserError(f"{where}: label {int(bad[0])} is out of range; this dataset has classes "
                        f"0..{num_classes - 1}")
    return torch.from_numpy(labels.astype(np.int64))


def with_num_classes(images: ImageSet, num_classes: int | None, where: str) -> ImageSet:
    """The image set with an explicit label space (``data.num_classes``), every label checked against it.

    A label space of one class is refused: its head gives a zero cross-entropy gradient, nothing to attack.
    """
    if num_classes is None:
        if images.num_classes < 2:
            raise UserError(f"{where}: the labels span {images.num_classes} class; a one-class head gives a zero "
                            "gradient (nothing to attack): set data.num_classes (fedleak attack: --num-classes) to "
                            "the size of the label space")
        return images
    bad = images.labels[(images.labels < 0) | (images.labels >= num_classes)]
    if bad.numel():
        raise UserError(f"{where}: label {int(bad[0])} is outside data.num_classes = {num_classes} (classes "
                        f"0..{num_classes - 1}); raise the class count or fix the labels")
    return ImageSet(images.name, images.images, images.labels, num_classes, images.source)


def build_image_set(
    name: str, images: np.ndarray, labels: np.ndarray, num_classes: int | None, size: int | None, source: str,
    where: str,
) -> ImageSet:
    """Shared tail of every source: N×C×H×W array + labels → checked, channel-matched, resized :class:`ImageSet`.

    Args:
        name: Dataset name.
        images: N×C×H×W, uint8 or float in [0, 1].
        labels: N integer labels.
        num_classes: Label space counted by the source (e.g. distinct identities); used only where the catalogue
            has none (LFW). ``None`` there means ``labels.max() + 1``.
        size: Requested side (``data.image_size``); ``None`` uses the catalogue's native size.
        source: Human-readable origin.
        where: File or source named in error messages.
    """
    info = dataset_info(name)
    if len(images) == 0:
        raise UserError(f"{where}: no images found")
    if len(images) != len(labels):
        raise UserError(f"{where}: {len(images)} images but {len(labels)} labels; they must match one to one")
    if images.dtype != np.uint8:
        images = images.astype(np.float32)
        if images.min() < 0 or images.max() > 1:
            raise UserError(f"{where}: float images must lie in [0, 1] (got {images.min():.3g}..{images.max():.3g}); "
                            "store uint8 0..255 or rescale")
    classes = info.num_classes or num_classes or int(np.max(labels)) + 1
    label_tensor = check_labels(labels, classes, where)
    images = match_channels(images, info.channels)
    tensor = to_tensor_images(images, size or info.native_size)
    return ImageSet(name=name, images=tensor, labels=label_tensor, num_classes=classes, source=source)
