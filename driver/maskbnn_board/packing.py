"""Vectorised bit packing, bit-compatible with FINN's PYNQ driver.

FINN's driver packs the innermost (folded) dimension with ``finnpy_to_packed_bytearray(...,
reverse_inner=True, reverse_endian=True)`` and unpacks with the matching
``packed_bytearray_to_finnpy``. Both flips together mean: the packed bytes of one stream word are a
little-endian integer in which value ``i`` occupies bits ``[i*b, (i+1)*b)``, zero-padded at the top
to whole bytes. That is exactly ``np.packbits(..., bitorder="little")`` over the values' low ``b``
bits, so no flips, strings or float containers are needed here.
"""

from __future__ import annotations

import numpy as np

from maskbnn_board.datatypes import IntType
from maskbnn_board.errors import DriverError


def packed_bytes(n_values: int, dtype: IntType) -> int:
    """Bytes one stream word of ``n_values`` values of ``dtype`` takes (padded to whole bytes)."""
    return (n_values * dtype.bits + 7) // 8


def pack(
    values: np.ndarray, dtype: IntType, *, check: bool = True, wrap: bool = False
) -> np.ndarray:
    """Pack the innermost dimension of integer ``values`` into uint8 words (FINN's layout).

    ``check`` refuses values outside ``dtype``'s range; ``wrap`` instead keeps their low bits, the
    way a hardware stream of that width truncates them (the emulated accelerator uses this).
    """
    values = np.asarray(values)
    if values.ndim == 0:
        values = values.reshape(1)
    if values.dtype.kind == "f":
        ints = values.astype(np.int64)
        if not np.array_equal(ints, values):
            raise DriverError(f"pack: {dtype} values must be integers, got fractional inputs")
        values = ints
    elif values.dtype.kind not in "iub":
        raise DriverError(f"pack: cannot pack a {values.dtype} array")
    # A container whose whole range is the data type's (uint8 for UINT8 ...) needs no range check.
    exact = values.dtype.itemsize * 8 == dtype.bits and (values.dtype.kind == "i") == dtype.signed
    if check and not wrap and values.size and not (exact and not dtype.bipolar):
        lo, hi = int(values.min()), int(values.max())
        if lo < dtype.min or hi > dtype.max or (dtype.bipolar and np.any(values == 0)):
            raise DriverError(
                f"pack: values in [{lo}, {hi}] do not fit {dtype} ([{dtype.min}, {dtype.max}])"
            )
    b = dtype.bits
    # Fast path: whole bytes in a matching container are already the little-endian word.
    if b in (8, 16, 32, 64) and not dtype.bipolar:
        container = np.dtype(f"<{'i' if dtype.signed else 'u'}{b // 8}")
        if values.dtype.itemsize == b // 8 or wrap:
            word = values.astype(container, copy=False)
        else:
            word = values.astype(container)
        return np.ascontiguousarray(word).view(np.uint8).reshape(*values.shape[:-1], -1)
    if dtype.bipolar:
        pattern = (values > 0).astype(np.uint8)
    else:
        # two's complement low bits; uint64 keeps INT64 patterns intact
        pattern = values.astype(np.int64).astype(np.uint64) if b > 8 else values.astype(np.uint8)
    if b == 1:
        bits = (pattern & 1).astype(np.uint8)
        return np.packbits(bits, axis=-1, bitorder="little")
    shifts = np.arange(b, dtype=pattern.dtype)
    bits = ((pattern[..., None] >> shifts) & 1).astype(np.uint8)
    bits = bits.reshape(*values.shape[:-1], values.shape[-1] * b)
    return np.packbits(bits, axis=-1, bitorder="little")


def unpack(packed: np.ndarray, dtype: IntType, n_values: int) -> np.ndarray:
    """Inverse of :func:`pack`: uint8 words (..., bytes) -> integers (..., n_values).

    Returns the smallest numpy integer type holding ``dtype`` (BIPOLAR as int8 in {-1, +1}).
    """
    packed = np.asarray(packed)
    if packed.dtype != np.uint8:
        raise DriverError(f"unpack: packed data must be uint8, got {packed.dtype}")
    need = packed_bytes(n_values, dtype)
    if packed.shape[-1] < need:
        raise DriverError(
            f"unpack: {n_values} {dtype} values need {need} bytes per word, got {packed.shape[-1]}"
        )
    b = dtype.bits
    out_t = dtype.numpy_dtype()
    if b in (8, 16, 32, 64) and not dtype.bipolar:
        container = np.dtype(f"<{'i' if dtype.signed else 'u'}{b // 8}")
        word = np.ascontiguousarray(packed[..., :need])
        return word.view(container).astype(out_t, copy=False)
    bits = np.unpackbits(packed[..., :need], axis=-1, count=n_values * b, bitorder="little")
    bits = bits.reshape(*packed.shape[:-1], n_values, b)
    if b <= 8:
        # little-endian bit groups of <= 8 bits re-pack into one byte each
        vals = np.packbits(bits, axis=-1, bitorder="little")[..., 0]
    else:
        weights = np.left_shift(np.uint64(1), np.arange(b, dtype=np.uint64))
        vals = (bits.astype(np.uint64) * weights).sum(axis=-1, dtype=np.uint64)
    if dtype.bipolar:
        return (vals.astype(np.int8) * 2 - 1).astype(out_t)
    if dtype.signed:
        sign = np.uint64(1) << np.uint64(b - 1)
        v = vals.astype(np.uint64)
        signed = (v ^ sign).astype(np.int64) - np.int64(1 << (b - 1))
        return signed.astype(out_t)
    return vals.astype(out_t)
