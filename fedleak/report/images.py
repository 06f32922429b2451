"""Image grids for run outputs: a row of true images above a row of reconstructions, saved as PNG.

Grids are plain pixel mosaics (no text), so they stay sharp and small; the HTML page labels the rows.
Small images (MNIST's 28×28) are enlarged by pixel repetition so a browser does not blur them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

#: Grids are enlarged by an integer factor until each image is at least this many pixels wide.
MIN_DISPLAY_SIDE = 64
#: Grey value of the padding between images and of the "nothing recovered" placeholder.
PAD_VALUE = 0.5
PAD = 2


def to_hwc(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """B×C×H×W (or C×H×W) images in [0, 1] → float array B×H×W×3, clipped to [0, 1]."""
    array = images.detach().cpu().float().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4:
        raise ValueError(f"expected images shaped B×C×H×W, got shape {tuple(array.shape)}")
    array = np.clip(np.nan_to_num(array.astype(np.float32), nan=0.0), 0.0, 1.0)
    array = np.transpose(array, (0, 2, 3, 1))
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    elif array.shape[-1] != 3:
        raise ValueError(f"expected 1 or 3 channels, got {array.shape[-1]}")
    return array


def grid(rows: Sequence[torch.Tensor | np.ndarray | None], columns: int | None = None) -> np.ndarray:
    """Mosaic of image rows as uint8 H×W×3. A ``None`` row (nothing recovered) becomes grey placeholders.

    Every row is padded to the widest row (``columns``); all images must share one spatial size.
    """
    arrays = [None if row is None else to_hwc(row) for row in rows]
    known = [a for a in arrays if a is not None]
    if not known:
        raise ValueError("a grid needs at least one row of images")
    height, width = known[0].shape[1:3]
    if any(a.shape[1:3] != (height, width) for a in known):
        raise ValueError("all images of a grid must share one size")
    columns = columns or max(len(a) for a in known)
    canvas = np.full((len(arrays) * (height + PAD) + PAD, columns * (width + PAD) + PAD, 3), PAD_VALUE, np.float32)
    for r, array in enumerate(arrays):
        if array is None:
            continue
        for c, image in enumerate(array[:columns]):
            top, left = PAD + r * (height + PAD), PAD + c * (width + PAD)
            canvas[top : top + height, left : left + width] = image
    scale = max(1, -(-MIN_DISPLAY_SIDE // max(height, width)))
    canvas = canvas.repeat(scale, axis=0).repeat(scale, axis=1)
    return (canvas * 255 + 0.5).astype(np.uint8)


def save_png(pixels: np.ndarray, path: Path) -> Path:
    """Write a uint8 H×W×3 array as PNG (parent folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="PNG")
    return path


def save_grid(path: Path, *rows: torch.Tensor | np.ndarray | None) -> Path:
    """Save rows of images (e.g. true, reconstructed) as one PNG grid."""
    return save_png(grid(rows), path)
