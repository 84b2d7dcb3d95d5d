"""Data-stage benchmark on 1024 px JPEGs, the size of the MaskedFace-Net originals.

The shipped sample's images are 128 px; this makes 1024 px JPEGs from them (bicubic upscale,
quality 95, original CMFD/IMFD layout) in a temporary folder and, in the same run, times
- a plain one-process Pillow loop: open, convert to RGB, resize to 32 px (no draft),
- the same loop with the project's decoding (JPEG draft: libjpeg decodes at 1/8, 128 px),
- ``maskbnn data prepare --keep-all`` (draft decoding in a process per core, streamed to disk).
It also states what draft decoding changes: the 32x32 pixel difference to a full decode and the
shipped weights' top-1 on these images decoded both ways (on the 128 px sample itself nothing
changes: images up to 4x the input size decode in full).

Writes build/bench/prepare.json and prepare.md.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from maskbnn.config import load_network_sets
from maskbnn.paths import BUILD_DIR, SAMPLE_DIR
from maskbnn.pipeline.data.datasets import ArrayDataset
from maskbnn.pipeline.data.maskedface import CLASSES, Item, label_from_filename, load_image
from maskbnn.report import md_table


def make_originals(n: int, out: Path, size: int = 1024) -> list[Path]:
    """n 1024 px JPEGs from the shipped sample, same names and layout."""
    files = sorted(SAMPLE_DIR.rglob("*.jpg"))[:n]
    made = []
    for f in files:
        dst = out / f.relative_to(SAMPLE_DIR)
        dst.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(f) as img:
            img.convert("RGB").resize((size, size), Image.BICUBIC).save(dst, quality=95)
        made.append(dst)
    return made


def plain_loop(files: list[Path], size: int = 32) -> np.ndarray:
    """The baseline: what a one-process script does without thinking about decoding."""
    out = np.empty((len(files), size, size, 3), np.uint8)
    for i, f in enumerate(files):
        with Image.open(f) as img:
            out[i] = np.asarray(img.convert("RGB").resize((size, size), Image.BILINEAR))
    return out


def project_loop(files: list[Path], size: int = 32) -> np.ndarray:
    """One process, the project's decoding (draft + to_model_input)."""
    out = np.empty((len(files), size, size, 3), np.uint8)
    for i, f in enumerate(files):
        out[i] = load_image(Item(0, "", f.name, f), size)
    return out


def _top1(network: str, x: np.ndarray, y: np.ndarray) -> float:
    from maskbnn.models.checkpoint import load_weights, pretrained_path
    from maskbnn.models.registry import get_network
    from maskbnn.pipeline.train.trainer import evaluate_model

    model, _ = get_network(network)
    load_weights(model, pretrained_path(network), network)
    return evaluate_model(model, ArrayDataset(x, y, CLASSES), CLASSES, progress=False)["top1"]


def bench(n: int, workers: int = 0) -> dict:
    from maskbnn.pipeline.data.prepare import PrepareParams, prepare

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "originals"
        t0 = time.perf_counter()
        files = make_originals(n, src)
        made_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        full = plain_loop(files)
        plain_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        draft = project_loop(files)
        draft_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        manifest = prepare(
            src, Path(tmp) / "prepared", PrepareParams(workers=workers, keep_all=True)
        )
        prep_s = time.perf_counter() - t0
    y = np.array([label_from_filename(f) for f in files], np.int64)
    diff = np.abs(full.astype(np.int16) - draft.astype(np.int16))
    return {
        "images": len(files),
        "image_size_in": 1024,
        "cores": os.cpu_count(),
        "seconds_to_make_jpegs": round(made_s, 2),
        "plain_pillow_loop_img_per_s": len(files) / plain_s,
        "draft_loop_img_per_s": len(files) / draft_s,
        "prepare_img_per_s": len(files) / prep_s,
        "prepare_images_kept": manifest["total"],
        "prepare_vs_plain": plain_s / prep_s,
        "draft_vs_full_decode_32px": {
            "mean_abs": float(diff.mean()),
            "max_abs": int(diff.max()),
            "pixels_equal_fraction": float((diff == 0).mean()),
        },
        "shipped_top1_on_1024px": {
            net: {"full_decode": _top1(net, full, y), "draft": _top1(net, draft, y)}
            for net in load_network_sets().bench_prepare
        },
    }


def write_report(r: dict, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    jpath, mpath = out_dir / "prepare.json", out_dir / "prepare.md"
    jpath.write_text(json.dumps(r, indent=2) + "\n")
    d = r["draft_vs_full_decode_32px"]
    lines = [
        f"# Data prepare on {r['images']} 1024 px JPEGs ({r['cores']} cores)",
        "",
        *md_table(
            ("decoder", "img/s", "vs plain"),
            [
                (
                    "plain Pillow loop, 1 process",
                    f"{r['plain_pillow_loop_img_per_s']:,.0f}",
                    "1.0x",
                ),
                (
                    "JPEG draft, 1 process",
                    f"{r['draft_loop_img_per_s']:,.0f}",
                    f"{r['draft_loop_img_per_s'] / r['plain_pillow_loop_img_per_s']:.1f}x",
                ),
                (
                    "`data prepare --keep-all` (draft, pool)",
                    f"{r['prepare_img_per_s']:,.0f}",
                    f"{r['prepare_vs_plain']:.1f}x",
                ),
            ],
        ),
        "",
        f"Draft vs full decode at 32x32: mean |diff| {d['mean_abs']:.3f}, max {d['max_abs']} "
        f"(of 255), {100 * d['pixels_equal_fraction']:.1f}% of values equal.",
        "",
        *md_table(
            ("shipped weights", "top-1 full decode", "top-1 draft"),
            (
                (net, f"{t['full_decode']:.2f}%", f"{t['draft']:.2f}%")
                for net, t in r["shipped_top1_on_1024px"].items()
            ),
        ),
    ]
    mpath.write_text("\n".join(lines) + "\n")
    return jpath, mpath


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=BUILD_DIR / "bench")
    p.add_argument("--images", type=int, default=1000, help="how many sample images to upscale")
    p.add_argument("--workers", type=int, default=0, help="data prepare processes (0: per core)")


def run(args: argparse.Namespace) -> int:
    jpath, mpath = write_report(bench(args.images, args.workers), args.out)
    print(mpath.read_text())
    print(f"wrote {jpath}")
    return 0
