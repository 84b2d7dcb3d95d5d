"""In-memory datasets for training and evaluation: uint8 NHWC arrays, loaded in milliseconds.

Sources: a prepared MaskedFace-Net folder (the data stage's output), a raw MaskedFace-Net folder
(prepared on the fly into a cache next to the build), MNIST idx files and the CIFAR-10 python pickles.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskbnn.errors import UserError
from maskbnn.paths import BUILD_DIR


@dataclass(frozen=True)
class ArrayDataset:
    """Images (N, H, W, C) uint8 and labels (N,) int64; `names` identify images in reports,
    `groups` the face each image shows (MaskedFace-Net: several images per face)."""

    x: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]
    names: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.y)


def load_prepared(folder: Path, split: str) -> ArrayDataset:
    """Load one split ('train', 'test' or 'all') of a prepared MaskedFace-Net dataset."""
    folder = Path(folder)
    npz, manifest = folder / "dataset.npz", folder / "manifest.json"
    if not npz.is_file() or not manifest.is_file():
        raise UserError(f"{folder} is not a prepared dataset (no dataset.npz + manifest.json)")
    classes = tuple(json.loads(manifest.read_text())["classes"])
    with np.load(npz) as z:
        sides = ("train", "test") if split == "all" else (split,)
        if any(f"x_{s}" not in z for s in sides):
            raise UserError(f"unknown split {split!r}; use train, test or all")
        x = np.concatenate([z[f"x_{s}"] for s in sides])
        y = np.concatenate([z[f"y_{s}"] for s in sides]).astype(np.int64)
        names = tuple(np.concatenate([z[f"file_{s}"] for s in sides]).tolist())
        faces = [f"face_{s}" for s in sides]
        groups = (
            tuple(np.concatenate([z[f] for f in faces]).tolist())
            if all(f in z for f in faces)
            else ()
        )
    return ArrayDataset(x, y, classes, names, groups)


def hold_out(data: ArrayDataset, fraction: float) -> tuple[ArrayDataset, ArrayDataset]:
    """Split `data` (a train split) into (fit, validation) with about `fraction` of it in
    validation, for choosing a recipe without looking at the test split. Whole faces go to one
    side (a face seen in training would flatter validation, as it would the test split); without
    face ids each image is its own group. A salted hash of the group decides, so the split is the
    same in every run, for every seed and after --resume."""
    if not 0.0 < fraction < 1.0:
        raise UserError(f"--val-faces {fraction}: give a fraction between 0 and 1, e.g. 0.15")
    keys = data.groups or tuple(str(i) for i in range(len(data)))
    cut = int(fraction * 2**32)
    side = np.array(
        [
            int.from_bytes(hashlib.sha256(f"val:{k}".encode()).digest()[:4], "big") < cut
            for k in keys
        ]
    )
    if side.all() or not side.any():
        raise UserError(
            f"--val-faces {fraction}: {len(data)} images in {len(set(keys))} groups leave one "
            "side empty; use more images or another fraction"
        )

    def pick(mask: np.ndarray) -> ArrayDataset:
        idx = np.flatnonzero(mask)
        names = tuple(data.names[i] for i in idx) if data.names else ()
        groups = tuple(data.groups[i] for i in idx) if data.groups else ()
        return ArrayDataset(data.x[idx], data.y[idx], data.classes, names, groups)

    return pick(~side), pick(side)


def load_maskedface(datadir: Path, split: str, image_size: int = 32, seed: int = 0) -> ArrayDataset:
    """A prepared folder as is; a raw MaskedFace-Net folder is prepared first (cached by path)."""
    from maskbnn.pipeline.data.prepare import PrepareParams, prepare

    datadir = Path(datadir)
    if (datadir / "dataset.npz").is_file():
        return load_prepared(datadir, split)
    key = f"{datadir.resolve()}|{image_size}|{seed}"
    cache = BUILD_DIR / "data" / "cache" / f"{datadir.name}-{_short_hash(key)}"
    if not (cache / "dataset.npz").is_file():
        prepare(datadir, cache, PrepareParams(image_size=image_size, seed=seed))
    return load_prepared(cache, split)


MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def load_mnist(datadir: Path, split: str) -> ArrayDataset:
    """MNIST from the four standard idx files (optionally .gz) in `datadir` (or datadir/MNIST/raw)."""
    datadir = Path(datadir)
    base = next(
        (
            d
            for d in (datadir, datadir / "MNIST" / "raw", datadir / "mnist")
            if _find(d, MNIST_FILES["test"][0])
        ),
        None,
    )
    if base is None:
        raise UserError(
            f"MNIST not found in {datadir}: put train-images-idx3-ubyte, train-labels-idx1-ubyte, "
            "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (or their .gz) there"
        )
    sides = ("train", "test") if split == "all" else (split,)
    xs, ys = [], []
    for s in sides:
        img_name, lbl_name = MNIST_FILES[s]
        xs.append(_read_idx(_find(base, img_name))[..., None])
        ys.append(_read_idx(_find(base, lbl_name)).astype(np.int64))
    return ArrayDataset(np.concatenate(xs), np.concatenate(ys), tuple(str(i) for i in range(10)))


CIFAR_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


def load_cifar10(datadir: Path, split: str) -> ArrayDataset:
    """CIFAR-10 from the python pickles: cifar-10-batches-py/ or cifar-10-python.tar.gz in datadir."""
    datadir = Path(datadir)
    folder = next(
        (d for d in (datadir / "cifar-10-batches-py", datadir) if (d / "test_batch").is_file()),
        None,
    )
    archive = datadir / "cifar-10-python.tar.gz"
    if folder is None and not archive.is_file():
        raise UserError(
            f"CIFAR-10 not found in {datadir}: put cifar-10-python.tar.gz or the extracted "
            "cifar-10-batches-py/ folder (data_batch_*, test_batch) there"
        )
    batches: dict[str, dict] = {}
    if folder is not None:
        for p in sorted(folder.glob("*_batch*")):
            with open(p, "rb") as f:
                batches[p.name] = read_pickle_batch(f)
    else:
        with tarfile.open(archive) as tar:
            for m in tar.getmembers():
                name = Path(m.name).name
                if m.isfile() and "_batch" in name:
                    batches[name] = read_pickle_batch(tar.extractfile(m))
    want = {
        "train": [n for n in sorted(batches) if n.startswith("data_batch")],
        "test": ["test_batch"],
    }
    names = want["train"] + want["test"] if split == "all" else want.get(split)
    if names is None:
        raise UserError(f"unknown split {split!r}; use train, test or all")
    x = np.concatenate([np.asarray(batches[n]["data"], np.uint8) for n in names])
    y = np.concatenate([np.asarray(batches[n]["labels"], np.int64) for n in names])
    return ArrayDataset(x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), y, CIFAR_CLASSES)


def load_dataset(kind: str, datadir: Path, split: str, image_size: int = 32) -> ArrayDataset:
    """Dispatch on the dataset kind a network config names."""
    loaders = {
        "maskedface": lambda: load_maskedface(datadir, split, image_size),
        "mnist": lambda: load_mnist(datadir, split),
        "cifar10": lambda: load_cifar10(datadir, split),
    }
    if kind not in loaders:
        raise UserError(f"unknown dataset {kind!r}; known: {', '.join(loaders)}")
    return loaders[kind]()


# What a CIFAR-style batch may name when unpickled: numpy's array, dtype and scalar rebuilders (both
# numpy 1 and 2 module paths) and the codec Python 3 uses for bytes. Plain pickle.load would call
# any global a file names, so a downloaded or shared batch could run code.
_PICKLE_GLOBALS = {
    *(
        (f"numpy.{core}.multiarray", n)
        for core in ("core", "_core")
        for n in ("_reconstruct", "scalar")
    ),
    *((f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which is not array data")
        return super().find_class(module, name)


def read_pickle_batch(f) -> dict:
    """One CIFAR-style pickle batch with str keys (Python 2 pickles and some re-packs use bytes).
    Anything but arrays and plain data is refused before it is called (UserError)."""
    try:
        d = _ArrayUnpickler(f, encoding="latin1").load()
    except pickle.UnpicklingError as err:
        raise UserError(f"pickle {getattr(f, 'name', '')} refused: {err}") from None
    if not isinstance(d, dict):
        raise UserError(f"pickle {getattr(f, 'name', '')} holds a {type(d).__name__}, not a batch")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}


def _find(base: Path, name: str) -> Path | None:
    for cand in (base / name, base / f"{name}.gz"):
        if cand.is_file():
            return cand
    return None


def _read_idx(path: Path) -> np.ndarray:
    """The idx format (LeCun): magic (0, 0, dtype 0x08=uint8, ndim), big-endian dims, data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if raw[:3] != b"\x00\x00\x08":
        raise UserError(f"{path}: not an unsigned-byte idx file")
    ndim = raw[3]
    dims = np.frombuffer(raw, ">u4", count=ndim, offset=4)
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(tuple(int(d) for d in dims))


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]
