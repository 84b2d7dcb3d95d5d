"""The data stage at full-dataset scale: JPEG draft decoding (1024 px originals), every image kept,
and an interrupted prepare that resumes from its on-disk decode cache."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskbnn.paths import REPO_ROOT
from maskbnn.pipeline.data.maskedface import CLASSES, Item, load_image, scan, to_model_input
from maskbnn.pipeline.data.prepare import DecodeCache, PrepareParams, _decoder, prepare


def _full_decode(path: Path, size: int = 32) -> np.ndarray:
    with Image.open(path) as img:
        img.load()
        return to_model_input(img, size)


def test_draft_leaves_the_shipped_sample_as_it_was(sample_dir):
    """The 128 px sample images decode in full at 32 px (128 <= 4 x 32): every array equals the
    decode without draft, so the shipped weights' figures on the sample stand unchanged."""
    _, items, _ = scan(sample_dir)
    for it in items:
        np.testing.assert_array_equal(load_image(it, 32), _full_decode(it.path), err_msg=it.name)


def test_draft_on_a_1024px_jpeg_is_close_to_a_full_decode_and_shared_by_the_driver(
    sample_dir, tmp_path
):
    from maskbnn_board.preprocess import load_image as board_load

    changed = 0
    for src in sorted((sample_dir / "IMFD").glob("*.jpg"))[:8]:
        big = tmp_path / src.name
        with Image.open(src) as img:
            img.convert("RGB").resize((1024, 1024), Image.BICUBIC).save(big, quality=95)
        with Image.open(big) as img:
            img.draft(None, (128, 128))
            assert img.size == (128, 128)  # libjpeg's 1/8 scale
        ours = load_image(Item(0, "f", big.name, big), 32)
        np.testing.assert_array_equal(board_load(big, 32), ours)
        diff = np.abs(ours.astype(int) - _full_decode(big).astype(int))
        assert diff.max() <= 6 and diff.mean() < 1.0, (diff.max(), diff.mean())
        changed += int(diff.any())
    assert changed, "draft decoding is not in use: every array equals a full decode"


def test_keep_all_keeps_every_readable_image(small_original, tmp_path):
    (small_original / "IMFD" / "00001_Mask_Chin.jpg").write_bytes(b"not a jpeg")
    m = prepare(small_original, tmp_path / "out", PrepareParams(keep_all=True, workers=1))
    assert m["params"]["per_class"] == "all"
    assert m["total"] == 48 and len(m["skipped"]) == 1
    assert sum(m["counts"]["train"].values()) + sum(m["counts"]["test"].values()) == 48
    assert not (tmp_path / "out" / ".prepare-work").exists()


def test_an_interrupted_prepare_resumes_from_its_decode_cache(small_original, tmp_path):
    params = PrepareParams(keep_all=True, workers=2)
    fresh = prepare(small_original, tmp_path / "fresh", params)

    # A run that decoded half the images, then was killed: its cache stays in out/.prepare-work.
    out = tmp_path / "out"
    layout, items, _ = scan(small_original)
    cache = DecodeCache(out, small_original, layout, items, 32)
    with _decoder(1) as pool:
        done = cache.decode(pool, range(0, len(items), 2), "first half")
    cache.pixels[done[0]] = 7  # a mark: a resumed run reuses the decoded rows, does not redo them
    del cache

    resumed = prepare(small_original, out, params)
    marked = items[done[0]].name
    with np.load(out / "dataset.npz") as z:
        side = "train" if marked in z["file_train"] else "test"
        row = list(z[f"file_{side}"]).index(marked)
        assert (z[f"x_{side}"][row] == 7).all()
    assert resumed["total"] == fresh["total"] == 48
    assert not (out / ".prepare-work").exists()

    # Without the mark, the resumed run's data equals an uninterrupted one's.
    cache = DecodeCache(tmp_path / "again", small_original, layout, items, 32)
    with _decoder(1) as pool:
        cache.decode(pool, range(0, len(items), 3), "a third")
    del cache
    again = prepare(small_original, tmp_path / "again", params)
    assert again["content_sha256"] == fresh["content_sha256"]
    assert json.loads((tmp_path / "again" / "manifest.json").read_text())["classes"] == list(
        CLASSES
    )


@pytest.mark.slow
def test_a_killed_prepare_on_1024px_jpegs_resumes_to_the_same_dataset(sample_dir, tmp_path):
    """`maskbnn data prepare` (a process pool) is SIGKILLed, with its workers, mid-decode; run
    again, it reuses what was decoded and writes the dataset an uninterrupted run writes."""
    src = tmp_path / "originals"
    for suffix in ("_Mask", "_Mask_Mouth_Chin", "_Mask_Nose_Mouth", "_Mask_Chin"):
        sub = "CMFD" if suffix == "_Mask" else "IMFD"
        (src / sub).mkdir(parents=True, exist_ok=True)
        for f in sorted((sample_dir / sub).glob(f"*{suffix}.jpg"))[:75]:
            with Image.open(f) as img:
                img.convert("RGB").resize((1024, 1024), Image.BICUBIC).save(src / sub / f.name)
    cmd = [sys.executable, "-m", "maskbnn", "data", "prepare", "--source", str(src)]
    cmd += ["--keep-all", "--workers", "2"]
    proc = subprocess.Popen(
        [*cmd, "--out", str(tmp_path / "killed")],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the pool's workers die with it
    )
    status = tmp_path / "killed" / ".prepare-work" / "status.npy"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if status.is_file() and (np.load(status, mmap_mode="r") != 0).sum() >= 64:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "prepare ended before it could be interrupted"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    done_before = int((np.load(status, mmap_mode="r") != 0).sum())
    assert 64 <= done_before < 300
    assert not (tmp_path / "killed" / "dataset.npz").exists()

    again = subprocess.run(
        [*cmd, "--out", str(tmp_path / "killed")], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr
    assert "resumed:" in again.stdout
    fresh = subprocess.run(
        [*cmd, "--out", str(tmp_path / "fresh")], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert fresh.returncode == 0, fresh.stderr
    resumed = json.loads((tmp_path / "killed" / "manifest.json").read_text())
    ref = json.loads((tmp_path / "fresh" / "manifest.json").read_text())
    assert resumed["decoded_by_an_interrupted_run"] >= done_before
    assert resumed["content_sha256"] == ref["content_sha256"]
    assert resumed["total"] == ref["total"] == 300
