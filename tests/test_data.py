"""Data stage: layouts, the face-disjoint split, determinism, and every bad-input case."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maskbnn.cli import main
from maskbnn.errors import UserError
from maskbnn.pipeline.data.datasets import load_cifar10, load_mnist, load_prepared
from maskbnn.pipeline.data.maskedface import (
    CLASSES,
    detect_layout,
    face_id,
    label_from_filename,
    load_image,
    scan,
)
from maskbnn.pipeline.data.prepare import PrepareParams, prepare, split_of
from maskbnn.pipeline.train.augment import random_crop_flip
from tests.conftest import shared_path


def test_labels_and_face_ids_from_file_names():
    assert label_from_filename("CMFD/00012_Mask.jpg") == 0
    assert label_from_filename("IMFD/00012_Mask_Mouth_Chin.jpg") == 1
    assert label_from_filename("x/00012_Mask_Nose_Mouth.png") == 2
    assert label_from_filename("00012_Mask_Chin.JPG") == 3
    assert label_from_filename("00012_Masked.jpg") is None
    assert label_from_filename("cat.jpg") is None
    # CMFD and IMFD copies of one face share the id, with or without a letter prefix.
    assert face_id("00012_Mask") == face_id("00012_Mask_Chin") == face_id("s00012_Mask") == "12"


def test_shipped_sample_recreates_its_split(sample_dir, tmp_path):
    m = prepare(sample_dir, tmp_path / "p")
    assert m["layout"] == "original"
    assert m["counts"]["test"] == {c: 180 for c in CLASSES}
    assert m["counts"]["train"] == {c: 70 for c in CLASSES}
    train = load_prepared(tmp_path / "p", "train")
    test = load_prepared(tmp_path / "p", "test")
    assert train.x.shape == (280, 32, 32, 3) and train.x.dtype == np.uint8
    assert len(test) == 720 and set(test.y.tolist()) == {0, 1, 2, 3}
    with np.load(tmp_path / "p" / "dataset.npz") as z:
        assert not set(z["face_train"]) & set(z["face_test"])


def test_same_face_goes_to_one_side_and_seed_changes_split():
    faces = [str(i) for i in range(2000)]
    a = [split_of(f, 0, 0.2) for f in faces]
    assert a == [split_of(f, 0, 0.2) for f in faces]
    assert 0.15 < a.count("test") / len(a) < 0.25
    assert a != [split_of(f, 1, 0.2) for f in faces]


def test_prepare_is_deterministic_under_a_seed(small_original, tmp_path):
    m1 = prepare(small_original, tmp_path / "a", PrepareParams(per_class=10, seed=3))
    m2 = prepare(small_original, tmp_path / "b", PrepareParams(per_class=10, seed=3))
    m3 = prepare(small_original, tmp_path / "c", PrepareParams(per_class=10, seed=4))
    assert m1["content_sha256"] == m2["content_sha256"] != m3["content_sha256"]
    assert m1["total"] == 40


def test_one_face_in_cmfd_and_imfd_lands_on_one_side(tmp_path, sample_dir):
    """Full-dataset situation: the same numeric id once in CMFD and once in IMFD."""
    src = tmp_path / "src"
    cm = sorted((sample_dir / "CMFD").glob("*.jpg"))
    im = sorted((sample_dir / "IMFD").glob("*_Mask_Chin.jpg"))
    for sub, suffix, files in (("CMFD", "_Mask", cm), ("IMFD", "_Mask_Chin", im)):
        (src / sub / "000").mkdir(parents=True)  # original dataset shards into sub-folders
        for i, f in enumerate(files[:40]):
            shutil.copyfile(f, src / sub / "000" / f"{i:05d}{suffix}.jpg")
    _, items, _ = scan(src)
    sides = {}
    for it in items:
        sides.setdefault(it.face, set()).add(split_of(it.face, 0, 0.3))
    assert len(sides) == 40 and all(len(s) == 1 for s in sides.values())


def test_class_folder_layout(tmp_path, small_original):
    src = tmp_path / "folders"
    for name in CLASSES:
        (src / name).mkdir(parents=True)
    for f in small_original.rglob("*.jpg"):
        shutil.copyfile(f, src / CLASSES[label_from_filename(f)] / f"img_{f.name}")
    assert detect_layout(src) == "class-folders"
    m = prepare(src, tmp_path / "out", PrepareParams(per_class=12))
    assert m["layout"] == "class-folders" and m["total"] == 48


def test_cifar_pickle_layout_keeps_its_given_split(tmp_path, small_original):
    """The seed's fork stored MaskedFaceNet/ as CIFAR-10-style pickles of 32x32 images."""
    d = tmp_path / "pk" / "MaskedFaceNet"
    d.mkdir(parents=True)
    _, items, _ = scan(small_original)
    imgs = np.stack([load_image(it, 32) for it in items])
    labels = [it.label for it in items]
    rows = imgs.transpose(0, 3, 1, 2).reshape(len(items), -1)
    for name, sl in (
        ("data_batch_1", slice(0, 30)),
        ("data_batch_2", slice(30, 40)),
        ("test_batch", slice(40, 48)),
    ):
        with open(d / name, "wb") as f:
            pickle.dump({"data": rows[sl], "labels": labels[sl]}, f)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({"label_names": ["CMFD", "IMFD1", "IMFD2", "IMFD3"]}, f)
    assert detect_layout(tmp_path / "pk") == "cifar-pickle"
    m = prepare(tmp_path / "pk", tmp_path / "out", PrepareParams(per_class=12))
    assert m["params"]["split"] == "given by source"
    test = load_prepared(tmp_path / "out", "test")
    assert len(test) == 8
    # Pixels survive the pickle round trip exactly.
    assert {a.tobytes() for a in test.x} == {a.tobytes() for a in imgs[40:48]}


def test_corrupt_and_truncated_images_are_skipped_and_counted(small_original, tmp_path):
    good = next((small_original / "CMFD").glob("*.jpg"))
    (small_original / "CMFD" / "99990_Mask.jpg").write_bytes(b"not a jpeg at all")
    (small_original / "CMFD" / "99991_Mask.jpg").write_bytes(good.read_bytes()[:600])
    (small_original / "CMFD" / "notes.jpg").write_bytes(good.read_bytes())
    m = prepare(small_original, tmp_path / "o", PrepareParams(per_class=12))
    reasons = {s["file"]: s["reason"] for s in m["skipped"]}
    assert "unreadable" in reasons["CMFD/99990_Mask.jpg"]
    assert "unreadable" in reasons["CMFD/99991_Mask.jpg"]
    assert "suffix" in reasons["CMFD/notes.jpg"]
    assert m["counts"]["train"]["mask_correct"] + m["counts"]["test"]["mask_correct"] == 12


def test_bad_sources_give_clear_errors(tmp_path, small_original):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no MaskedFace-Net layout"):
        prepare(tmp_path / "empty", tmp_path / "o")
    with pytest.raises(UserError, match="does not exist"):
        prepare(tmp_path / "missing", tmp_path / "o")
    unl = tmp_path / "unlabelled" / "CMFD"
    unl.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(unl / "face.jpg")
    with pytest.raises(UserError, match="no labelled images"):
        prepare(tmp_path / "unlabelled", tmp_path / "o")
    with pytest.raises(UserError, match=r"asked for 50 images per class, found per class: \{"):
        prepare(small_original, tmp_path / "o", PrepareParams(per_class=50))
    for f in (small_original / "IMFD").glob("*_Mask_Chin.jpg"):
        f.unlink()
    with pytest.raises(UserError, match="nose_mouth_uncovered': 0"):
        prepare(small_original, tmp_path / "o")
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_all_unreadable_in_a_class_is_an_error_with_counts(small_original, tmp_path):
    for f in (small_original / "IMFD").glob("*_Mask_Nose_Mouth.jpg"):
        f.write_bytes(b"garbage")
    with pytest.raises(UserError, match="chin_uncovered has only 0 readable images of 12"):
        prepare(small_original, tmp_path / "o")


def test_non_square_and_grey_images_are_converted(tmp_path, small_original):
    f = next((small_original / "CMFD").glob("*.jpg"))
    Image.open(f).convert("L").resize((90, 60)).save(small_original / "CMFD" / "77777_Mask.png")
    _, items, _ = scan(small_original)
    it = next(i for i in items if i.name.endswith("77777_Mask.png"))
    assert load_image(it, 32).shape == (32, 32, 3)


def test_cli_prepare_and_summary(small_original, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["data", "prepare", "--source", str(small_original), "--out", str(out)]) == 0
    assert main(["data", "summary", str(out)]) == 0
    assert "| mask_correct |" in capsys.readouterr().out
    assert json.loads((out / "manifest.json").read_text())["total"] == 48
    assert main(["data", "prepare", "--source", str(tmp_path / "nope"), "--out", str(out)]) == 2


def test_batched_crop_flip_moves_real_pixels():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.uint8).reshape(2, 3, 8, 8)
    g = torch.Generator().manual_seed(0)
    y = random_crop_flip(x, padding=0, flip=True, generator=g)
    for i in range(2):
        assert torch.equal(y[i], x[i]) or torch.equal(y[i], x[i].flip(-1))
    y = random_crop_flip(x, padding=2, flip=False, generator=torch.Generator().manual_seed(1))
    assert y.shape == x.shape and y.dtype == x.dtype
    # Each output is an 8x8 window of the zero-padded input.
    for i in range(2):
        xp = torch.nn.functional.pad(x[i], (2, 2, 2, 2))
        assert any(
            torch.equal(y[i], xp[:, r : r + 8, c : c + 8]) for r in range(5) for c in range(5)
        )


@pytest.mark.slow
def test_full_shared_sample_gives_4000_balanced_face_disjoint(tmp_path):
    src = shared_path("maskedface-net-sample")
    m = prepare(src, tmp_path / "full")
    assert m["total"] == 4000 and not m["skipped"]
    per_class = {c: m["counts"]["train"][c] + m["counts"]["test"][c] for c in CLASSES}
    assert per_class == {c: 1000 for c in CLASSES}
    with np.load(tmp_path / "full" / "dataset.npz") as z:
        assert not set(z["face_train"]) & set(z["face_test"])


def test_mnist_and_cifar_from_local_files():
    mn = load_mnist(shared_path("mnist"), "test")
    assert mn.x.shape == (10000, 28, 28, 1) and mn.y.max() == 9
    cf = load_cifar10(shared_path("cifar10"), "test")
    assert cf.x.shape == (10000, 32, 32, 3) and np.bincount(cf.y).tolist() == [1000] * 10


def test_missing_zoo_datasets_say_where_to_put_files(tmp_path: Path):
    with pytest.raises(UserError, match="t10k-images-idx3-ubyte"):
        load_mnist(tmp_path, "train")
    with pytest.raises(UserError, match="cifar-10-python.tar.gz"):
        load_cifar10(tmp_path, "train")
