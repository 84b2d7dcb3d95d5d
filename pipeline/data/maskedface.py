"""MaskedFace-Net on disk: the four classes, the three layouts we read, and the image pre-processing.

Class labels follow the original dataset's file names (Cabani et al., Smart Health 19 (2021) 100144):
the suffix names the face parts the mask COVERS. The seed's CMFD, IMFD1, IMFD2, IMFD3 are these four.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from maskbnn.errors import UserError
from maskbnn.pipeline.data.datasets import read_pickle_batch

# The one pre-processing step shared by the data stage, training, evaluation, the golden vectors and
# the board driver; it lives in the driver package because that package may not import this one.
from maskbnn_board.preprocess import decode_file, to_model_input  # noqa: E402, F401

CLASSES = ("mask_correct", "nose_uncovered", "chin_uncovered", "nose_mouth_uncovered")
# File-name suffix -> class index (original layout).
SUFFIX_TO_CLASS = {"_Mask": 0, "_Mask_Mouth_Chin": 1, "_Mask_Nose_Mouth": 2, "_Mask_Chin": 3}
# Folder names accepted for the one-folder-per-class layout (case-insensitive).
FOLDER_ALIASES = {
    0: ("mask_correct", "cmfd", "mask", "correct"),
    1: ("nose_uncovered", "imfd1", "mask_mouth_chin", "imfd_nose"),
    2: ("chin_uncovered", "imfd2", "mask_nose_mouth", "imfd_chin"),
    3: ("nose_mouth_uncovered", "imfd3", "mask_chin", "imfd_nose_mouth"),
}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
LAYOUTS = ("original", "class-folders", "cifar-pickle")

_NAME_RE = re.compile(r"^(?P<prefix>.*?)(?P<suffix>_Mask(?:_Mouth_Chin|_Nose_Mouth|_Chin)?)$")
_DIGITS_RE = re.compile(r"(\d+)")


@dataclass(frozen=True)
class Item:
    """One image to read: its class, the face it shows, and where its pixels come from."""

    label: int
    face: str  # same face -> same split side
    name: str  # path relative to the source folder, or "<batch>#<index>" for pickles
    path: Path | None = None  # image file (original / class-folder layouts)
    pixels: np.ndarray | None = None  # HWC uint8 (cifar-pickle layout)
    given_split: str | None = None  # "train"/"test" when the source already fixes the split


def label_from_filename(path: str | Path) -> int | None:
    """Class index from an original-layout file name, or None when the suffix is not recognised."""
    m = _NAME_RE.match(Path(path).stem)
    return SUFFIX_TO_CLASS.get(m.group("suffix")) if m else None


def face_id(stem: str) -> str:
    """The face a file shows: its numeric id (CMFD/IMFD share it), else the whole stem."""
    m = _NAME_RE.match(stem)
    prefix = m.group("prefix") if m else stem
    digits = _DIGITS_RE.findall(prefix)
    return str(int(digits[-1])) if digits else stem


def detect_layout(source: Path) -> str:
    """Name the layout of a MaskedFace-Net folder, or raise a UserError saying what was found."""
    if not source.is_dir():
        raise UserError(f"source folder {source} does not exist")
    if _pickle_dir(source) is not None:
        return "cifar-pickle"
    if any((source / d).is_dir() for d in ("CMFD", "IMFD")):
        return "original"
    if _class_folders(source):
        return "class-folders"
    n_img = sum(1 for _ in _images_under(source))
    if n_img and any(label_from_filename(p) is not None for p in _images_under(source)):
        return "original"
    raise UserError(
        f"{source}: no MaskedFace-Net layout recognised ({n_img} images found). Expected CMFD/ and "
        f"IMFD/ folders with *_Mask*.jpg files, one folder per class "
        f"({', '.join(a[0] for a in FOLDER_ALIASES.values())}), or a MaskedFaceNet/ folder with "
        "data_batch_* and test_batch pickles."
    )


def scan(source: Path, layout: str | None = None) -> tuple[str, list[Item], list[dict]]:
    """List the images of a source folder: (layout, items, skipped-with-reason)."""
    layout = layout or detect_layout(source)
    if layout not in LAYOUTS:
        raise UserError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if layout == "original":
        items, skipped = _scan_original(source)
    elif layout == "class-folders":
        items, skipped = _scan_class_folders(source)
    else:
        items, skipped = _scan_pickles(source)
    if not items:
        raise UserError(
            f"{source}: no labelled images found in the {layout} layout "
            f"({len(skipped)} files skipped: {_reasons(skipped)})"
        )
    return layout, items, skipped


def load_image(item: Item, size: int) -> np.ndarray:
    """Decode one item to a size x size x 3 uint8 array (raises on a corrupt or truncated file)."""
    if item.pixels is not None:
        return to_model_input(Image.fromarray(item.pixels), size)
    return decode_file(item.path, size)


# --- layouts -----------------------------------------------------------------------------------


def _images_under(root: Path) -> Iterator[Path]:
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file():
            yield p


def _scan_original(source: Path) -> tuple[list[Item], list[dict]]:
    items, skipped = [], []
    for p in _images_under(source):
        label = label_from_filename(p)
        rel = str(p.relative_to(source))
        if label is None:
            skipped.append({"file": rel, "reason": "file name has no MaskedFace-Net class suffix"})
            continue
        items.append(Item(label=label, face=face_id(p.stem), name=rel, path=p))
    return items, skipped


def _class_folders(source: Path) -> dict[int, Path]:
    found = {}
    for d in source.iterdir():
        if not d.is_dir():
            continue
        for label, aliases in FOLDER_ALIASES.items():
            if d.name.lower() in aliases:
                found[label] = d
    return found


def _scan_class_folders(source: Path) -> tuple[list[Item], list[dict]]:
    folders = _class_folders(source)
    items: list[Item] = []
    for label, d in sorted(folders.items()):
        for p in _images_under(d):
            rel = str(p.relative_to(source))
            items.append(Item(label=label, face=face_id(p.stem), name=rel, path=p))
    return items, []


def _pickle_dir(source: Path) -> Path | None:
    for cand in (source / "MaskedFaceNet", source):
        if (cand / "batches.meta").is_file() and any(cand.glob("data_batch_*")):
            return cand
    return None


def _scan_pickles(source: Path) -> tuple[list[Item], list[dict]]:
    """CIFAR-10-style pickles as the seed's fork wrote them (data N x 3072 CHW rows, labels)."""
    d = _pickle_dir(source)
    if d is None:
        raise UserError(f"{source}: no MaskedFaceNet/ folder with batches.meta and data_batch_*")
    items, skipped = [], []
    for batch in sorted(d.glob("data_batch_*")) + [d / "test_batch"]:
        if not batch.is_file():
            continue
        try:
            with open(batch, "rb") as f:
                entry = read_pickle_batch(f)
            data = np.asarray(entry["data"], dtype=np.uint8)
            labels = entry.get("labels", entry.get("fine_labels"))
            side = int(round((data.shape[1] // 3) ** 0.5))
            pixels = data.reshape(-1, 3, side, side).transpose(0, 2, 3, 1)
        except Exception as err:  # a broken batch is skipped and reported, never fatal
            skipped.append({"file": batch.name, "reason": f"unreadable pickle: {err}"})
            continue
        names = entry.get("filenames") or [None] * len(labels)
        for i, (label, px) in enumerate(zip(labels, pixels, strict=True)):
            name = f"{batch.name}#{i}"
            if not 0 <= int(label) < len(CLASSES):
                skipped.append({"file": name, "reason": f"label {label} outside 0..3"})
                continue
            # Pickles carry no face ids unless file names were kept, and the seed's fork stored
            # augmented copies of one face: its own train/test batches are the only safe split.
            face = face_id(Path(str(names[i])).stem) if names[i] else name
            split = "test" if batch.name == "test_batch" else "train"
            items.append(Item(int(label), face, name, pixels=px, given_split=split))
    return items, skipped


def _reasons(skipped: list[dict]) -> str:
    reasons: dict[str, int] = {}
    for s in skipped:
        reasons[s["reason"]] = reasons.get(s["reason"], 0) + 1
    return "; ".join(f"{n}x {r}" for r, n in reasons.items()) or "none"
