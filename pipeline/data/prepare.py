"""Data stage: a MaskedFace-Net folder -> a prepared, face-disjoint uint8 dataset, class-balanced
(an equal draw per class) or, with ``keep_all``, every readable image.

Output folder: ``dataset.npz`` (uint8 NHWC images, labels, face ids, file names per split) and
``manifest.json`` (counts per class and split, source, parameters, content hash, skipped files).

Decoding runs in a pool of worker processes (one per core by default); each decoded image goes
straight into a memory-mapped array on disk (``out/.prepare-work/``) with a status byte, so memory
holds the 32 px output, never the decoded originals, and an interrupted run (Ctrl-C, a kill)
continues where it stopped when started again with the same source and parameters.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from maskbnn.errors import UserError
from maskbnn.pipeline.data.maskedface import CLASSES, Item, load_image, scan
from maskbnn_board.preprocess import DRAFT_SCALE

FORMAT_VERSION = 1
SPLITS = ("train", "test")


@dataclass(frozen=True)
class PrepareParams:
    per_class: int | None = None  # None: the largest equal count every class can give
    test_fraction: float = 0.2
    image_size: int = 32
    seed: int = 0
    layout: str | None = None  # None: detect
    workers: int = 0  # decoding processes; 0: one per core
    keep_all: bool = False  # every readable image instead of an equal count per class


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
    if params.keep_all and params.per_class is not None:
        raise UserError("choose either an equal count per class or every image, not both")
    wanted = params.per_class or min(available.values())
    if wanted > min(available.values()):
        raise UserError(
            f"{source}: asked for {wanted} images per class, found per class: {available}"
        )

    cache = DecodeCache(out, source, layout, items, params.image_size)
    rng = np.random.default_rng(params.seed)
    with _decoder(params.workers) as pool:
        if params.keep_all:
            chosen = cache.decode(pool, range(len(items)), "decode")
        else:
            chosen = []
            for c in range(len(CLASSES)):
                order = [by_class[c][i] for i in rng.permutation(len(by_class[c]))]
                got = _decode_until(cache, pool, order, wanted)
                if len(got) < wanted:
                    raise UserError(
                        f"{source}: class {CLASSES[c]} has only {len(got)} readable images of "
                        f"{wanted} asked ({available[CLASSES[c]]} listed, the rest unreadable)"
                    )
                chosen.extend(got)
    skipped = skipped + cache.unreadable()

    arrays = _split_arrays(items, chosen, cache.pixels, params)
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
            "per_class": "all" if params.keep_all else wanted,
            "test_fraction": params.test_fraction,
            "image_size": params.image_size,
            "jpeg_draft_scale": DRAFT_SCALE,
            "seed": params.seed,
            "split": "given by source" if layout == "cifar-pickle" else "face-disjoint hash",
        },
        "counts": counts,
        "total": int(sum(len(arrays[f"y_{s}"]) for s in SPLITS)),
        "content_sha256": digest,
        "skipped": skipped,
        "decoded_by_an_interrupted_run": cache.resumed,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    _write_atomic(out, arrays, manifest)
    cache.remove()
    return manifest


class DecodeCache:
    """Every scanned item's decoded pixels in a memory-mapped .npy beside the output, with a status
    byte each (0 to do, 1 decoded, 2 unreadable; reasons in unreadable.jsonl). Reused by the next
    run when source, file list and image size are the same, so an interrupted prepare resumes."""

    def __init__(self, out: Path, source: Path, layout: str, items: Sequence[Item], size: int):
        self.folder = Path(out) / ".prepare-work"
        self.items = items
        names = hashlib.sha256("\n".join(it.name for it in items).encode()).hexdigest()
        key = {"source": str(Path(source).resolve()), "layout": layout, "files": names}
        key |= {"n": len(items), "size": size, "draft": DRAFT_SCALE, "format": FORMAT_VERSION}
        key_file = self.folder / "key.json"
        fresh = not key_file.is_file() or json.loads(key_file.read_text()) != key
        if fresh:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder.mkdir(parents=True)
        mode = "w+" if fresh else "r+"
        open_memmap = np.lib.format.open_memmap
        self.pixels = open_memmap(
            self.folder / "pixels.npy", mode, np.uint8, (len(items), size, size, 3)
        )
        self.status = open_memmap(self.folder / "status.npy", mode, np.uint8, (len(items),))
        if fresh:
            key_file.write_text(json.dumps(key))
        self.reasons: dict[int, str] = {}
        log = self.folder / "unreadable.jsonl"
        if log.is_file():
            for line in log.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    self.reasons[row["i"]] = row["reason"]
        self.size = size
        self.index = {id(it): i for i, it in enumerate(items)}
        self.resumed = int((self.status != 0).sum())  # images an earlier, interrupted run did

    def decode(self, pool, which: Iterable[int], desc: str) -> list[int]:
        """Decode the items `which` not decoded yet; returns those of them that are readable."""
        which = list(which)
        todo = [i for i in which if self.status[i] == 0]
        chunks = [todo[k : k + CHUNK] for k in range(0, len(todo), CHUNK)]
        work = [[(i, self.items[i], self.size) for i in c] for c in chunks]
        with (
            tqdm(total=len(todo), desc=desc, unit="img", leave=False) as bar,
            open(self.folder / "unreadable.jsonl", "a") as log,
        ):
            for results in pool(work):
                for i, res in results:
                    if isinstance(res, str):
                        self.reasons[i] = res
                        log.write(json.dumps({"i": i, "reason": res}) + "\n")
                    else:
                        self.pixels[i] = res
                log.flush()
                # Status after pixels: a killed process leaves both in the page cache, so a
                # status byte of 1 always has its pixels (no msync per chunk: that is for
                # surviving a power cut, and costs more than it protects here).
                for i, res in results:
                    self.status[i] = 2 if isinstance(res, str) else 1
                bar.update(len(results))
        return [i for i in which if self.status[i] == 1]

    def unreadable(self) -> list[dict]:
        return [{"file": self.items[i].name, "reason": r} for i, r in sorted(self.reasons.items())]

    def remove(self) -> None:
        del self.pixels, self.status
        shutil.rmtree(self.folder, ignore_errors=True)


CHUNK = 64  # images per task: large enough to amortise the pickling, small enough to resume


def _decode_chunk(tasks: list[tuple[int, Item, int]]) -> list[tuple[int, np.ndarray | str]]:
    return [(i, _try_load(item, size)) for i, item, size in tasks]


class _decoder:
    """A callable mapping _decode_chunk over chunks: a process pool (spawned: the caller may have
    torch's threads running, which fork does not copy safely), or this process for one worker."""

    def __init__(self, workers: int) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.pool = None

    def __enter__(self):
        if self.workers > 1:
            self.pool = multiprocessing.get_context("spawn").Pool(self.workers)
        return self

    def __call__(self, chunks: list) -> Iterable[list]:
        if self.pool is None:
            return map(_decode_chunk, chunks)
        return self.pool.imap(_decode_chunk, chunks)

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.terminate()  # also on Ctrl-C: what was decoded is on disk
            self.pool.join()


def _decode_until(cache: DecodeCache, pool, candidates: list[Item], wanted: int) -> list[int]:
    """Decode candidates in random order until `wanted` readable ones are found."""
    got: list[int] = []
    pos = 0
    while len(got) < wanted and pos < len(candidates):
        # At least 64 per round keeps every decoder busy near the end of a class.
        chunk = candidates[pos : pos + max(wanted - len(got), 64)]
        pos += len(chunk)
        ok = cache.decode(pool, [cache.index[id(it)] for it in chunk], "decode")
        got.extend(ok[: wanted - len(got)])
    return got


def _try_load(item: Item, size: int) -> np.ndarray | str:
    try:
        return load_image(item, size)
    except Exception as err:  # corrupt or truncated image: skipped and counted, never fatal
        return f"unreadable image: {type(err).__name__}: {err}"


def _split_arrays(items: Sequence[Item], chosen: list[int], pixels: np.ndarray, params) -> dict:
    sides: dict[str, list[int]] = {s: [] for s in SPLITS}
    for i in chosen:
        it = items[i]
        sides[it.given_split or split_of(it.face, params.seed, params.test_fraction)].append(i)
    arrays = {}
    s = params.image_size
    for side, rows in sides.items():
        rows.sort(key=lambda i: (items[i].label, items[i].name))  # independent of timing
        idx = np.array(rows, dtype=np.int64)
        arrays[f"x_{side}"] = np.array(pixels[idx]) if rows else np.zeros((0, s, s, 3), np.uint8)
        arrays[f"y_{side}"] = np.array([items[i].label for i in rows], dtype=np.uint8)
        arrays[f"face_{side}"] = np.array([items[i].face for i in rows], dtype=str)
        arrays[f"file_{side}"] = np.array([items[i].name for i in rows], dtype=str)
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
