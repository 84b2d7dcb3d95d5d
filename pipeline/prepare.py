"""Data stage: a MaskedFace-Net folder -> a prepared, face-disjoint, class-balanced uint8 dataset.

Output folder: ``dataset.npz`` (uint8 NHWC images, labels, face ids, file names per split) and
``manifest.json`` (counts per class and split, source, parameters, content hash, skipped files).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from maskbnn.errors import UserError
from maskbnn.pipeline.maskedface import CLASSES, Item, load_image, scan

FORMAT_VERSION = 1
SPLITS = ("train", "test")


@dataclass(frozen=True)
class PrepareParams:
    per_class: int | None = None  # None: the largest equal count every class can give
    test_fraction: float = 0.2
    image_size: int = 32
    seed: int = 0
    layout: str | None = None  # None: detect
    workers: int = 2


def split_of(face: str, seed: int, test_fraction: float) -> str:
    """Side of the split for a face: a seeded hash, so one face lands on one side in every run."""
    h = hashlib.sha256(f"{seed}:{face}".encode()).digest()
    return "test" if int.from_bytes(h[:8], "big") / 2**64 < test_fraction else "train"


def prepare(source: Path, out: Path, params: PrepareParams = PrepareParams()) -> dict:
    """Run the data stage; returns the manifest (also written to ``out/manifest.json``)."""
    if not 0.0 <= params.test_fraction < 1.0:
        raise UserError(f"test fraction must be in [0, 1), got {params.test_fraction}")
    t0 = time.perf_counter()
    source = Path(source)
    layout, items, skipped = scan(source, params.layout)
    by_class: dict[int, list[Item]] = defaultdict(list)
    for it in items:
        by_class[it.label].append(it)
    available = {CLASSES[c]: len(by_class[c]) for c in range(len(CLASSES))}
    if min(available.values()) == 0:
        raise UserError(f"{source}: some classes have no images; found per class: {available}")
    wanted = params.per_class or min(available.values())
    if wanted > min(available.values()):
        raise UserError(
            f"{source}: asked for {wanted} images per class, found per class: {available}"
        )

    rng = np.random.default_rng(params.seed)
    chosen: list[tuple[Item, np.ndarray]] = []
    with ThreadPoolExecutor(max(1, params.workers)) as pool:
        bar = tqdm(total=wanted * len(CLASSES), desc="decode", unit="img", leave=False)
        for c in range(len(CLASSES)):
            order = rng.permutation(len(by_class[c]))
            got = _decode_until(pool, [by_class[c][i] for i in order], wanted, params, skipped, bar)
            if len(got) < wanted:
                raise UserError(
                    f"{source}: class {CLASSES[c]} has only {len(got)} readable images of "
                    f"{wanted} asked ({available[CLASSES[c]]} listed, the rest unreadable)"
                )
            chosen.extend(got)
        bar.close()

    arrays = _split_arrays(chosen, params)
    digest = _content_hash(arrays)
    counts = {
        s: {CLASSES[c]: int((arrays[f"y_{s}"] == c).sum()) for c in range(len(CLASSES))}
        for s in SPLITS
    }
    for s in SPLITS:
        if len(arrays[f"y_{s}"]) == 0 and (s == "train" or params.test_fraction > 0):
            raise UserError(f"{source}: the {s} split is empty; use more images per class")
    manifest = {
        "format_version": FORMAT_VERSION,
        "source": str(source.resolve()),
        "layout": layout,
        "classes": list(CLASSES),
        "params": {
            "per_class": wanted,
            "test_fraction": params.test_fraction,
            "image_size": params.image_size,
            "seed": params.seed,
            "split": "given by source" if layout == "cifar-pickle" else "face-disjoint hash",
        },
        "counts": counts,
        "total": int(sum(len(arrays[f"y_{s}"]) for s in SPLITS)),
        "content_sha256": digest,
        "skipped": skipped,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    _write_atomic(out, arrays, manifest)
    return manifest


def _decode_until(pool, candidates, wanted, params, skipped, bar) -> list[tuple[Item, np.ndarray]]:
    """Decode candidates in random order until `wanted` readable ones are found."""
    got: list[tuple[Item, np.ndarray]] = []
    pos = 0
    while len(got) < wanted and pos < len(candidates):
        # At least 64 per chunk keeps both decoder threads busy near the end of a class.
        chunk = candidates[pos : pos + max(wanted - len(got), 64)]
        pos += len(chunk)
        loaded = pool.map(lambda i: _try_load(i, params.image_size), chunk)
        for it, res in zip(chunk, loaded, strict=True):
            if isinstance(res, str):
                skipped.append({"file": it.name, "reason": res})
            elif len(got) < wanted:
                got.append((it, res))
                bar.update(1)
    return got


def _try_load(item: Item, size: int) -> np.ndarray | str:
    try:
        return load_image(item, size)
    except Exception as err:  # corrupt or truncated image: skipped and counted, never fatal
        return f"unreadable image: {type(err).__name__}: {err}"


def _split_arrays(chosen: list[tuple[Item, np.ndarray]], params: PrepareParams) -> dict:
    sides: dict[str, list[tuple[Item, np.ndarray]]] = {s: [] for s in SPLITS}
    for it, px in chosen:
        side = it.given_split or split_of(it.face, params.seed, params.test_fraction)
        sides[side].append((it, px))
    arrays = {}
    s = params.image_size
    for side, rows in sides.items():
        rows.sort(key=lambda r: (r[0].label, r[0].name))  # order independent of thread timing
        arrays[f"x_{side}"] = (
            np.stack([px for _, px in rows]) if rows else np.zeros((0, s, s, 3), np.uint8)
        )
        arrays[f"y_{side}"] = np.array([it.label for it, _ in rows], dtype=np.uint8)
        arrays[f"face_{side}"] = np.array([it.face for it, _ in rows], dtype=str)
        arrays[f"file_{side}"] = np.array([it.name for it, _ in rows], dtype=str)
    return arrays


def _content_hash(arrays: dict) -> str:
    h = hashlib.sha256()
    for key in sorted(arrays):
        h.update(key.encode())
        h.update(np.ascontiguousarray(arrays[key]).tobytes())
    return h.hexdigest()


def _write_atomic(out: Path, arrays: dict, manifest: dict) -> None:
    """Write both files under temporary names, then rename: an interrupted run leaves the old ones."""
    out.mkdir(parents=True, exist_ok=True)
    tmp_npz = out / ".dataset.npz.tmp"
    with open(tmp_npz, "wb") as f:
        np.savez(f, **arrays)
    tmp_json = out / ".manifest.json.tmp"
    tmp_json.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp_npz, out / "dataset.npz")
    os.replace(tmp_json, out / "manifest.json")
