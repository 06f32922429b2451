"""Read the user's files (checkpoints, ``.npz`` archives, image files) so that a corrupt, lying or hostile file is
one :class:`UserError` naming the file and the field — never a traceback, never code run, never memory exhausted.

- Checkpoints: ``torch.load(weights_only=True)`` (tensors and plain containers only; a pickle that would run code is
  refused), then every value must be a tensor and every tensor finite (NaN weights are named, not attacked).
- ``.npz``: no pickled arrays; each array's header (shape, dtype) is read first and checked against the member's
  real size and :data:`MAX_ARRAY_BYTES` before anything is decompressed (a "zip bomb" never inflates).
- Images: the size is read from the header and refused past :data:`MAX_IMAGE_PIXELS` before decoding; 16-bit and
  32-bit grey images are scaled to 8 bits by their bit depth (PIL's ``convert`` would clip them to white).
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fedleak.errors import UserError

#: Largest array fedleak loads from an .npz (bytes, uncompressed).
MAX_ARRAY_BYTES = 4 << 30
#: Largest image fedleak decodes (pixels); photos of 40 megapixels pass, decompression bombs do not.
MAX_IMAGE_PIXELS = 64_000_000
#: Largest checkpoint file read (bytes).
MAX_CHECKPOINT_BYTES = 4 << 30


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


# --- checkpoints ---------------------------------------------------------------------------------------------------


def load_state_dict(path: Path, field: str) -> dict[str, torch.Tensor]:
    """A state_dict saved with ``torch.save(model.state_dict(), path)``, every tensor finite."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{field}: no such file {path}; give the path of a saved state_dict")
    if path.stat().st_size > MAX_CHECKPOINT_BYTES:
        raise UserError(f"{field}: {path} is larger than {MAX_CHECKPOINT_BYTES >> 30} GiB; not a checkpoint of a "
                        "model fedleak attacks")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 — any failure to read is the file's: empty, random bytes, a hostile pickle
        raise UserError(f"{field}: {path} is not a weights-only state_dict ({type(exc).__name__}: "
                        f"{_first_line(exc).split('. ')[0]}); fedleak loads tensors only, never code: save it with "
                        "torch.save(model.state_dict(), path)") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{field}: {path} holds a {type(state).__name__}, not a state_dict (names → tensors); save "
                        "it with torch.save(model.state_dict(), path)")
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise UserError(f"{field}: {path}: weight {name!r} holds {bad} NaN or infinite value(s); an attack on "
                            "it would only diverge: use a checkpoint of a model that trained without diverging")
    return state


# --- .npz archives -------------------------------------------------------------------------------------------------


def _npy_header(archive: zipfile.ZipFile, member: str) -> tuple[tuple[int, ...], np.dtype]:
    with archive.open(member) as handle:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
    return shape, dtype


def load_npz(path: Path, names: list[str]) -> dict[str, np.ndarray]:
    """The arrays ``names`` (those present) of the archive at ``path``, each checked before it is inflated: its
    header parses, it holds no Python objects, its declared size matches the member's size and stays under
    :data:`MAX_ARRAY_BYTES`."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
            for name in names:
                info = members.get(name)
                if info is None:
                    continue
                shape, dtype = _npy_header(archive, info.filename)
                if dtype.hasobject:
                    raise UserError(f"{path}: array {name!r} holds Python objects; store numbers (uint8, float) "
                                    "or strings")
                declared = math.prod(shape) * dtype.itemsize
                if declared > MAX_ARRAY_BYTES:
                    raise UserError(f"{path}: array {name!r} declares shape {shape} ({declared / 2**30:.1f} GiB); "
                                    f"fedleak loads at most {MAX_ARRAY_BYTES >> 30} GiB per array")
                if info.file_size < declared:
                    raise UserError(f"{path}: array {name!r} declares shape {shape} but holds only "
                                    f"{info.file_size} bytes; the file is truncated or its header lies")
                with archive.open(info.filename) as handle:
                    arrays[name] = np.lib.format.read_array(handle, allow_pickle=False)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 — truncated, empty, not a zip, a header that does not parse
        raise UserError(f"{path}: not a readable .npz archive ({type(exc).__name__}: {_first_line(exc)}); save it "
                        "with numpy.savez(path, x=images, y=labels)") from None
    return arrays


def check_finite(array: np.ndarray, where: str, what: str) -> None:
    """Refuse NaN or infinity in a float array, naming how many and where the first one is."""
    if np.issubdtype(array.dtype, np.floating):
        bad = ~np.isfinite(array)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise UserError(f"{where}: {what} holds {int(bad.sum())} NaN or infinite value(s), the first at index "
                            f"{first}; clean or drop those images")


# --- image files ---------------------------------------------------------------------------------------------------

_WIDE_GREY = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535}


def _to_8bit(image: Image.Image, path: Path) -> Image.Image:
    """Grey images of more than 8 bits, scaled by their bit depth to 8-bit ``L``; others unchanged."""
    if image.mode in _WIDE_GREY or image.mode == "I":
        array = np.asarray(image).astype(np.float64)
        if image.mode == "I":
            # PNG loads 16-bit grey as "I" too: its values then fit 16 bits; anything wider is 32-bit.
            peak = 65535.0 if array.min() >= 0 and array.max() <= 65535 else None
            if peak is None:
                raise UserError(f"{path}: 32-bit integer pixels ({array.min():.0f}..{array.max():.0f}); save the "
                                "image with 8 or 16 bits per channel")
        else:
            peak = float(_WIDE_GREY[image.mode])
        return Image.fromarray(np.round(array / peak * 255.0).astype(np.uint8), mode="L")
    if image.mode == "F":
        array = np.asarray(image)
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise UserError(f"{path}: floating-point pixels outside [0, 1] (or NaN); save the image with 8 or 16 bits "
                            "per channel")
        return Image.fromarray(np.round(array * 255.0).astype(np.uint8), mode="L")
    return image


def read_image(path: Path, channels: int) -> np.ndarray:
    """One image file as a C×H×W uint8 array with ``channels`` channels, read at its bit depth."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise UserError(f"{path}: {width}×{height} pixels; fedleak decodes at most {MAX_IMAGE_PIXELS:,} "
                                "(a larger file may be a decompression bomb): shrink the image")
            image.load()
            converted = _to_8bit(image, path).convert("L" if channels == 1 else "RGB")
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 — unreadable, truncated, a decompression bomb PIL itself caught
        raise UserError(f"{path}: not a readable image ({type(exc).__name__}); use PNG or JPEG") from None
    array = np.asarray(converted)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
