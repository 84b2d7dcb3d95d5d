"""Image pre-processing and MaskedFace-Net labels.

``to_model_input`` is the one pre-processing of the project: the data stage, training, evaluation
and the golden vectors import it (and the JPEG draft decoding of ``load_image``) from here (``maskbnn.pipeline.data.maskedface``), because the board
package may not import maskbnn. The file-name label rules are repeated there; a test compares them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from maskbnn_board.errors import DriverError

CLASSES = ("mask_correct", "nose_uncovered", "chin_uncovered", "nose_mouth_uncovered")
# MaskedFace-Net file-name suffix (the face parts the mask covers) -> class index.
SUFFIX_TO_CLASS = {"_Mask": 0, "_Mask_Mouth_Chin": 1, "_Mask_Nose_Mouth": 2, "_Mask_Chin": 3}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp")
# JPEG draft decoding: libjpeg scales by 1/2, 1/4 or 1/8 while decoding, to the smallest size that
# is still at least DRAFT_SCALE x the model input. A 1024 px MaskedFace-Net original decodes at
# 128 px (8x less work), then Pillow's antialiased resize takes it to 32 px; images of at most
# 4x the input size (the shipped 128 px sample at 32 px) decode in full, exactly as without draft.
DRAFT_SCALE = 4
_NAME_RE = re.compile(r"^(?P<prefix>.*?)(?P<suffix>_Mask(?:_Mouth_Chin|_Nose_Mouth|_Chin)?)$")


# 16-bit greyscale modes: Pillow's convert("RGB") clips them at 255 instead of scaling.
_GREY16 = ("I;16", "I;16B", "I;16L", "I;16N")


def to_model_input(img: Image.Image, size: int = 32) -> np.ndarray:
    """RGB, centre-crop to a square, Pillow bilinear resize to size x size -> uint8 HWC.
    16-bit greyscale keeps its top 8 bits; 32-bit integer or float pixels (no known range) are
    refused with the mode named."""
    if img.mode in _GREY16:
        img = Image.fromarray((np.asarray(img).astype(np.uint32) >> 8).astype(np.uint8))
    elif img.mode in ("I", "F"):
        raise DriverError(f"image mode {img.mode!r} (32-bit pixels) has no 8-bit scale; save it "
                          "as 8 or 16 bits per channel")  # fmt: skip
    try:
        img = img.convert("RGB")
    except ValueError as err:  # a mode Pillow cannot map to RGB: refuse rather than guess
        raise DriverError(f"image mode {img.mode!r} cannot be converted to RGB ({err})") from err
    w, h = img.size
    if w != h:
        s = min(w, h)
        img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def label_from_filename(path: str | Path) -> int | None:
    """Class index from a MaskedFace-Net file name (``00001_Mask_Chin.jpg`` -> 3), else None."""
    m = _NAME_RE.match(Path(path).stem)
    return SUFFIX_TO_CLASS.get(m.group("suffix")) if m else None


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted); a UserError-style message if none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DriverError(f"image folder {folder} does not exist")
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not files:
        raise DriverError(
            f"{folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}); point --images at a "
            "folder of MaskedFace-Net pictures"
        )
    return files


@dataclass(frozen=True)
class Skipped:
    """An image that could not be used, and why."""

    path: Path
    reason: str


def decode_file(path: Path, size: int = 32) -> np.ndarray:
    """Decode one file (JPEG draft, see DRAFT_SCALE) and pre-process it; Pillow's errors pass
    through (the data stage records them as skipped files, load_image turns them into DriverError)."""
    with Image.open(path) as f:
        f.draft(None, (DRAFT_SCALE * size, DRAFT_SCALE * size))  # JPEG only; else no-op
        f.load()  # a truncated file raises here instead of yielding grey pixels
        return to_model_input(f, size)


def load_image(path: Path, size: int = 32) -> np.ndarray:
    """Decode and pre-process one file; raises DriverError saying why it cannot be used."""
    try:
        return decode_file(path, size)
    except DriverError:
        raise
    except Image.DecompressionBombError as err:  # skipped like the data stage skips it
        raise DriverError(f"refused: {err}") from err
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise DriverError(f"unreadable image: {err}") from err


def iter_batches(
    files: list[Path], batch: int, size: int = 32
) -> Iterator[tuple[list[Path], np.ndarray, list[Skipped]]]:
    """Yield (files used, uint8 NHWC batch, files skipped) with up to ``batch`` images each."""
    used: list[Path] = []
    arrays: list[np.ndarray] = []
    skipped: list[Skipped] = []
    for p in files:
        try:
            arrays.append(load_image(p, size))
            used.append(p)
        except DriverError as err:
            skipped.append(Skipped(p, str(err)))
        if len(arrays) == batch:
            yield used, np.stack(arrays), skipped
            used, arrays, skipped = [], [], []
    if arrays or skipped:
        empty = np.zeros((0, size, size, 3), np.uint8)
        yield used, np.stack(arrays) if arrays else empty, skipped
