"""The data stage at full-dataset scale: JPEG draft decoding (1024 px originals), every image kept,
and an interrupted prepare that resumes from its on-disk decode cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from maskbnn.pipeline.maskedface import CLASSES, Item, load_image, scan, to_model_input
from maskbnn.pipeline.prepare import DecodeCache, PrepareParams, _decoder, prepare


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
