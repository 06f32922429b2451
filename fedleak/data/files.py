"""Images from the user's own files: an ``.npz`` archive, a folder per class, or one image.

* npz: ``x`` — uint8 N×H×W (grey) or N×H×W×3 (RGB), or float in [0, 1]; ``y`` — integer labels. Instead of ``y``
  an archive may hold ``names`` (one string per image, e.g. LFW identities): the sorted distinct names become
  classes 0..K-1. The channel count must match the dataset (grey for MNIST/Fashion-MNIST, RGB otherwise).
* folder: one sub-folder per class holding image files. When every sub-folder name is an integer (``0``, ``7``,
  ``10`` …) that integer is the class; otherwise the sorted names map to 0..K-1. The label space stays the
  dataset's (10 for MNIST, 100 for CIFAR-100; LFW: one class per folder). Images are converted to the dataset's
  channels, centre-cropped to a square and resized to one size, since photos rarely share one.
* image: a single image with ``data.label`` — "attack my own photo".

``data.split`` does not apply here: the file is the split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedleak.data.imageset import ImageSet, build_image_set, dataset_info, to_nchw, to_tensor_images
from fedleak.errors import UserError
from fedleak.safe_load import check_finite
from fedleak.safe_load import load_npz as load_npz_checked
from fedleak.safe_load import read_image as read_image_checked

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def load_npz(dataset: str, path: Path, image_size: int | None, non_square: str = "crop") -> ImageSet:
    if not path.is_file():
        raise UserError(f"{path}: no such file; data.path must name an .npz archive with arrays x and y")
    arrays = load_npz_checked(path, ["x", "y", "names"])
    if "x" not in arrays or not arrays.keys() & {"y", "names"}:
        raise UserError(f"{path}: needs arrays 'x' (images) and 'y' (labels) or 'names'; found "
                        f"{', '.join(sorted(arrays)) or 'none of them'}")
    x = arrays["x"]
    if "y" in arrays:
        labels, num_classes = arrays["y"], None
    else:
        classes, labels = np.unique(arrays["names"], return_inverse=True)
        num_classes = len(classes)
    if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
        raise UserError(f"{path}: x must be uint8 (0..255) or float in [0, 1], got {x.dtype}")
    check_finite(x, str(path), "x")
    images = to_nchw(x, str(path))
    height, width = images.shape[2:]
    images = square(images, non_square, f"{path}: x")
    want = dataset_info(dataset).channels
    if images.shape[1] != want:
        kind = "grey N×H×W" if want == 1 else "RGB N×H×W×3"
        raise UserError(f"{path}: x has {images.shape[1]} channel(s) but {dataset} images are {kind}; check "
                        f"data.dataset or convert the array")
    labels = np.asarray(labels).reshape(-1)
    if num_classes is None and (labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer)):
        raise UserError(f"{path}: y must hold integer class indices, got {labels.dtype}")
    cropped = f", centre-cropped from {height}×{width}" if height != width else ""
    origin = f"npz {path.name} ({len(images)} images{cropped})"
    return build_image_set(dataset, images, labels, num_classes, image_size, origin, where=str(path))


def read_image(path: Path, channels: int) -> np.ndarray:
    """One image file as a C×H×W uint8 array with ``channels`` channels, read at its bit depth (fedleak.safe_load)."""
    return read_image_checked(path, channels)


def center_square(image: np.ndarray) -> np.ndarray:
    """Crop […×]H×W to its central square, so resizing never distorts the aspect ratio."""
    height, width = image.shape[-2:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return image[..., top : top + side, left : left + side]


def square(images: np.ndarray, non_square: str, where: str) -> np.ndarray:
    """``images`` (…×H×W) cropped to their central square, or refused (``data.non_square: refuse``) when H ≠ W."""
    height, width = images.shape[-2:]
    if height == width:
        return images
    if non_square == "refuse":
        raise UserError(f"{where}: images are {height}×{width}, not square, and data.non_square is 'refuse'; crop "
                        "them, or set data.non_square: crop")
    return center_square(images)


def stack_images(images: list[np.ndarray], size: int, non_square: str = "crop", where: str = "") -> np.ndarray:
    """Centre-crop and resize C×H×W uint8 images to one N×C×size×size array.

    Stays uint8 when every image already has the target size; otherwise all become float32 in [0, 1], so one
    array never mixes 0..255 and 0..1 values.
    """
    squares = [square(image, non_square, where) for image in images]
    if all(square.shape[1:] == (size, size) for square in squares):
        return np.stack(squares)
    resized = [to_tensor_images(square[None].astype(np.float32) / 255.0, size).numpy() for square in squares]
    return np.concatenate(resized)


def load_folder(dataset: str, path: Path, image_size: int | None, non_square: str = "crop") -> ImageSet:
    if not path.is_dir():
        raise UserError(f"{path}: no such folder; data.path must name a folder with one sub-folder per class")
    class_dirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise UserError(f"{path}: no class sub-folders; put the images of class k in {path}/<k>/")
    if all(d.name.isdigit() for d in class_dirs):
        class_ids = {d: int(d.name) for d in class_dirs}
        num_classes = None
    else:
        class_ids = {d: i for i, d in enumerate(class_dirs)}
        num_classes = len(class_dirs)
    info = dataset_info(dataset)
    if info.num_classes is not None and num_classes is not None and num_classes > info.num_classes:
        raise UserError(f"{path}: {num_classes} class sub-folders but {dataset} has {info.num_classes} classes; "
                        f"remove folders or choose another data.dataset")
    size = image_size or info.native_size
    images, labels = [], []
    for class_dir in class_dirs:
        files = sorted(f for f in class_dir.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        for file in files:
            images.append(square(read_image(file, info.channels), non_square, str(file)))
            labels.append(class_ids[class_dir])
    if not images:
        raise UserError(f"{path}: the class sub-folders hold no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    stacked = stack_images(images, size)
    origin = f"folder {path.name} ({len(images)} images, {len(class_dirs)} classes)"
    return build_image_set(dataset, stacked, np.array(labels, dtype=np.int64), num_classes, size, origin, str(path))


def load_single_image(dataset: str, path: Path, label: int, image_size: int | None,
                      non_square: str = "crop", num_classes: int | None = None) -> ImageSet:
    """One image file with its label. The label space is ``num_classes`` when given, else the dataset's; LFW has
    none of its own, and a single image cannot define one (guessing ``label + 1`` built a one-class head whose
    gradient is zero), so there the count must be given."""
    if not path.is_file():
        raise UserError(f"{path}: no such image file; data.path must name a PNG or JPEG")
    info = dataset_info(dataset)
    num_classes = num_classes or info.num_classes
    if num_classes is None:
        raise UserError(f"{path}: {dataset} has no fixed label space and one image cannot define it; set "
                        f"data.num_classes (fedleak attack: --num-classes K) to the size of the model's head")
    if label >= num_classes:
        raise UserError(f"{path}: label {label} is out of range; the model's head has classes 0..{num_classes - 1} "
                        f"({'data.num_classes' if num_classes != info.num_classes else dataset})")
    size = image_size or info.native_size
    image = stack_images([read_image(path, info.channels)], size, non_square, str(path))
    origin = f"image {path.name} (label {label})"
    return build_image_set(dataset, image, np.array([label], dtype=np.int64), num_classes, size, origin, str(path))
