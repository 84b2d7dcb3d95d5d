"""Board-driver pre-processing and labels equal the training pipeline's, on real images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from maskbnn.pipeline.data import maskedface
from maskbnn_board.errors import DriverError
from maskbnn_board.preprocess import (
    CLASSES,
    SUFFIX_TO_CLASS,
    iter_batches,
    label_from_filename,
    list_images,
    load_image,
    to_model_input,
)


def sample_files(sample_dir, per_class: int = 15):
    files = []
    for suffix in SUFFIX_TO_CLASS:
        sub = "CMFD" if suffix == "_Mask" else "IMFD"
        files += sorted((sample_dir / sub).glob(f"*{suffix}.jpg"))[:per_class]
    assert len(files) == 4 * per_class
    return files


def test_same_arrays_as_the_data_stage_on_real_images(sample_dir):
    """One function, two ways of opening files: the driver's and the data stage's must agree."""
    for p in sample_files(sample_dir):
        got = load_image(p, 32)
        item = maskedface.Item(label=0, face="1", name=p.name, path=p)
        assert got.dtype == np.uint8 and got.shape == (32, 32, 3)
        np.testing.assert_array_equal(got, maskedface.load_image(item, 32), err_msg=str(p))


@pytest.mark.parametrize(
    "mode,size", [("L", (50, 40)), ("RGBA", (40, 64)), ("P", (33, 33)), ("CMYK", (128, 96))]
)
def test_other_modes_are_converted_to_rgb_before_crop_and_resize(sample_dir, mode, size):
    src = sample_files(sample_dir, 1)[2]
    with Image.open(src) as img:
        img = img.convert(mode).resize(size)
    s = min(size)
    left, top = (size[0] - s) // 2, (size[1] - s) // 2
    want = img.convert("RGB").crop((left, top, left + s, top + s)).resize((32, 32), Image.BILINEAR)
    np.testing.assert_array_equal(to_model_input(img), np.asarray(want))


def test_labels_and_classes_match_training(sample_dir):
    assert CLASSES == maskedface.CLASSES
    assert SUFFIX_TO_CLASS == maskedface.SUFFIX_TO_CLASS
    for p in sample_files(sample_dir, 5):
        assert label_from_filename(p) == maskedface.label_from_filename(p)
    assert label_from_filename("photo.jpg") is None


def test_unreadable_images_are_skipped_with_a_reason(tmp_path, sample_dir):
    good = sample_files(sample_dir, 1)
    for p in good:
        (tmp_path / p.name).write_bytes(p.read_bytes())
    (tmp_path / "broken_Mask.jpg").write_bytes(b"not a jpeg")
    truncated = good[0].read_bytes()
    (tmp_path / "cut_Mask_Chin.jpg").write_bytes(truncated[: len(truncated) // 3])
    files = list_images(tmp_path)
    assert len(files) == 6
    batches = list(iter_batches(files, batch=4))
    used = [p for u, _, _ in batches for p in u]
    skipped = [s for _, _, s in batches for s in s]
    assert sorted(p.name for p in used) == sorted(p.name for p in good)
    assert sorted(s.path.name for s in skipped) == ["broken_Mask.jpg", "cut_Mask_Chin.jpg"]
    assert all("unreadable image" in s.reason for s in skipped)
    assert sum(len(x) for _, x, _ in batches) == 4
    with pytest.raises(DriverError, match="unreadable"):
        load_image(tmp_path / "broken_Mask.jpg")


def test_empty_or_missing_image_folder(tmp_path):
    with pytest.raises(DriverError, match="holds no images"):
        list_images(tmp_path)
    with pytest.raises(DriverError, match="does not exist"):
        list_images(tmp_path / "nope")


def test_one_preprocessing_for_data_training_and_driver():
    assert maskedface.to_model_input is to_model_input


def test_a_16_bit_png_is_scaled_not_saturated(tmp_path, sample_dir):
    src = sample_files(sample_dir, 1)[0]
    with Image.open(src) as img:
        grey = img.convert("L")
    wide = np.asarray(grey).astype(np.uint16) * 257  # the same picture at 16 bits per pixel
    Image.fromarray(wide).save(tmp_path / "deep_Mask.png")
    with Image.open(tmp_path / "deep_Mask.png") as f:
        assert f.mode == "I;16"
    want = to_model_input(grey)
    np.testing.assert_array_equal(load_image(tmp_path / "deep_Mask.png"), want)
    assert (want == 255).mean() < 0.1  # the face is not a white square
    item = maskedface.Item(label=0, face="1", name="deep", path=tmp_path / "deep_Mask.png")
    np.testing.assert_array_equal(maskedface.load_image(item, 32), want)  # the data stage too


def test_32_bit_pixels_are_refused_with_the_mode():
    with pytest.raises(DriverError, match="mode 'I'"):
        to_model_input(Image.new("I", (40, 40), 70000))


def test_a_decompression_bomb_is_skipped_with_its_reason(tmp_path, sample_dir, monkeypatch):
    good = sample_files(sample_dir, 1)[0]
    (tmp_path / good.name).write_bytes(good.read_bytes())
    Image.new("L", (400, 400)).save(tmp_path / "huge_Mask.png")
    # Pillow refuses images over twice MAX_IMAGE_PIXELS; lowered so a small file stands for a bomb
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400 * 400 // 3)
    batches = list(iter_batches(list_images(tmp_path), batch=4))
    used = [p.name for u, _, _ in batches for p in u]
    skipped = [s for _, _, s in batches for s in s]
    assert used == [good.name]
    assert [s.path.name for s in skipped] == ["huge_Mask.png"]
    assert "decompression bomb" in skipped[0].reason
