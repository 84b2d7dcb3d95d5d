"""Board-driver packing: bit-compatible with FINN's data packing as FINN's PYNQ driver calls it."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest

from maskbnn_board.datatypes import parse_datatype
from maskbnn_board.errors import DeploymentError, DriverError
from maskbnn_board.packing import pack, packed_bytes, unpack

# Types in play: UINT8 images in; labels, popcount scores or bits out; plus awkward widths.
DTYPES = [
    "UINT8", "INT8", "UINT1", "BINARY", "BIPOLAR", "UINT2", "UINT3", "UINT4", "INT2", "INT4",
    "INT10", "UINT12", "INT16", "UINT16", "INT17", "INT24",
]  # fmt: skip
SHAPES = [(1, 1), (4, 1), (5, 3), (3, 8), (2, 4, 7), (2, 3, 16), (2, 32, 32, 1, 3)]


def random_values(rng: np.random.Generator, name: str, shape: tuple[int, ...]) -> np.ndarray:
    t = parse_datatype(name)
    if t.bipolar:
        return rng.choice(np.array([-1, 1]), size=shape)
    v = rng.integers(t.min, t.max + 1, size=shape, dtype=np.int64)
    v.flat[0], v.flat[-1] = t.min, t.max  # both ends of the range on every shape
    return v


@pytest.fixture(scope="module")
def finn_packing():
    """FINN's packing functions (FINN+ needs FINN_BUILD_DIR set to import)."""
    if "FINN_BUILD_DIR" not in os.environ:
        os.environ["FINN_BUILD_DIR"] = tempfile.mkdtemp(prefix="finn_build_")
    from finn.util import data_packing
    from qonnx.core.datatype import DataType

    return data_packing, DataType


def slow_reference_pack(values: np.ndarray, bits: int, bipolar: bool) -> np.ndarray:
    """Element by element with Python ints: value i in bits [i*b, (i+1)*b) of a little-endian word."""
    flat = values.reshape(-1, values.shape[-1])
    nbytes = (values.shape[-1] * bits + 7) // 8
    out = np.zeros((len(flat), nbytes), np.uint8)
    for r, row in enumerate(flat):
        word = 0
        for i, v in enumerate(row.tolist()):
            v = (v + 1) // 2 if bipolar else v
            word |= (v & ((1 << bits) - 1)) << (i * bits)
        out[r] = list(word.to_bytes(nbytes, "little"))
    return out.reshape(*values.shape[:-1], nbytes)


@pytest.mark.parametrize("name", DTYPES)
def test_pack_and_unpack_match_finn(name, finn_packing):
    data_packing, DataType = finn_packing
    t = parse_datatype(f"DataType['{name}']")
    rng = np.random.default_rng(len(name))
    for shape in SHAPES:
        v = random_values(rng, name, shape)
        ref = data_packing.finnpy_to_packed_bytearray(
            v.astype(np.float32), DataType[name], reverse_inner=True, reverse_endian=True
        )
        ours = pack(v, t)
        assert ours.dtype == np.uint8 and ours.shape == ref.shape
        np.testing.assert_array_equal(ours, ref, err_msg=f"{name} {shape}")
        back = data_packing.packed_bytearray_to_finnpy(
            np.ascontiguousarray(ref),
            DataType[name],
            shape,
            reverse_inner=True,
            reverse_endian=True,
        )
        got = unpack(ours, t, shape[-1])
        np.testing.assert_array_equal(got, back.astype(np.int64), err_msg=f"{name} {shape}")
        np.testing.assert_array_equal(got, v)
        np.testing.assert_array_equal(ours, slow_reference_pack(v, t.bits, t.bipolar))


def test_uint8_images_in_their_own_container_match_finn_fast_path(finn_packing):
    """FINN's driver feeds uint8 images: its whole-byte fast path and ours must agree."""
    data_packing, DataType = finn_packing
    x = np.random.default_rng(1).integers(0, 256, (7, 32, 32, 1, 3), dtype=np.uint8)
    ref = data_packing.finnpy_to_packed_bytearray(
        x, DataType["UINT8"], reverse_inner=True, reverse_endian=True
    )
    np.testing.assert_array_equal(pack(x, parse_datatype("UINT8")), ref)


def test_wide_types_roundtrip_beyond_float32_precision():
    """FINN's float32 containers cannot hold INT32+ exactly; ours keeps every bit."""
    rng = np.random.default_rng(2)
    for name in ("INT32", "UINT32", "INT40", "INT64", "UINT64"):
        t = parse_datatype(name)
        hi = 2**62 if t.bits == 64 else t.max
        lo = -(2**62) if (t.bits == 64 and t.signed) else t.min
        v = rng.integers(lo, hi, size=(3, 5), dtype=np.int64)
        np.testing.assert_array_equal(unpack(pack(v, t), t, 5), v)
        np.testing.assert_array_equal(pack(v, t), slow_reference_pack(v, t.bits, False))


def test_pack_refuses_values_outside_the_type_and_wrap_truncates():
    t = parse_datatype("INT8")
    with pytest.raises(DriverError, match="do not fit INT8"):
        pack(np.array([[128, 0]]), t)
    wrapped = pack(np.array([[128, -129]]), t, wrap=True)  # what an 8-bit stream carries
    np.testing.assert_array_equal(unpack(wrapped, t, 2), [[-128, 127]])
    with pytest.raises(DriverError, match="do not fit UINT2"):
        pack(np.array([[4]]), parse_datatype("UINT2"))
    with pytest.raises(DriverError, match="BIPOLAR"):
        pack(np.array([[0, 1]]), parse_datatype("BIPOLAR"))
    with pytest.raises(DriverError, match="fractional"):
        pack(np.array([[0.5]]), parse_datatype("UINT8"))


def test_unpack_checks_word_size():
    with pytest.raises(DriverError, match="need 2 bytes"):
        unpack(np.zeros((1, 1), np.uint8), parse_datatype("UINT4"), 3)
    assert packed_bytes(3, parse_datatype("UINT4")) == 2


def test_datatype_names():
    assert parse_datatype("DataType['UINT8']").max == 255
    assert parse_datatype("INT17").min == -(2**16)
    assert parse_datatype("BIPOLAR").bits == 1
    for bad in ("FLOAT32", "FIXED<8,4>", "DataType['SCALEDINT<8>']", "UINT0"):
        with pytest.raises(DeploymentError):
            parse_datatype(bad)
