"""The FINN integer data types that cross the accelerator's DMA boundary, without qonnx.

Settings files name them the way FINN's ``get_driver_shapes`` does (``"DataType['UINT8']"``) or
plainly (``"UINT8"``). Only integer-like types are supported: a BNN accelerator never streams
fixed- or floating-point data in or out, and refusing them beats packing them wrongly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from maskbnn_board.errors import DeploymentError

_NAME_RE = re.compile(r"^(?:DataType\[['\"]?)?(?P<name>[A-Z]+\d*)(?:['\"]?\])?$")
_INT_RE = re.compile(r"^(?P<kind>U?INT)(?P<bits>\d+)$")


@dataclass(frozen=True)
class IntType:
    """An integer-valued FINN data type: its name, bit width and value range."""

    name: str
    bits: int
    signed: bool
    bipolar: bool = False  # BIPOLAR: values {-1, +1} travel as bits {0, 1}

    @property
    def min(self) -> int:
        if self.bipolar:
            return -1
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def max(self) -> int:
        if self.bipolar:
            return 1
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    def numpy_dtype(self) -> np.dtype:
        """The smallest numpy integer that holds every value of this type."""
        for cand in (np.int8, np.int16, np.int32, np.int64) if self.signed else ():
            if np.iinfo(cand).min <= self.min and self.max <= np.iinfo(cand).max:
                return np.dtype(cand)
        for cand in (np.uint8, np.uint16, np.uint32, np.uint64):
            if not self.signed and self.max <= np.iinfo(cand).max:
                return np.dtype(cand)
        return np.dtype(np.int64)

    def __str__(self) -> str:
        return self.name


def parse_datatype(text: str) -> IntType:
    """``"DataType['INT17']"``, ``"INT17"``, ``"BIPOLAR"`` ... -> IntType (else DeploymentError)."""
    m = _NAME_RE.match(str(text).strip())
    name = m.group("name") if m else str(text)
    if name == "BIPOLAR":
        return IntType("BIPOLAR", 1, signed=True, bipolar=True)
    if name == "BINARY":
        return IntType("BINARY", 1, signed=False)
    im = _INT_RE.match(name)
    if im is None:
        raise DeploymentError(
            f"data type {text!r} is not supported by the board driver: it streams UINTn, INTn, "
            "BINARY and BIPOLAR tensors only"
        )
    bits = int(im.group("bits"))
    if not 1 <= bits <= 64 or (im.group("kind") == "INT" and bits < 2):
        raise DeploymentError(f"data type {text!r}: bit width {bits} outside 1..64")
    return IntType(name, bits, signed=im.group("kind") == "INT")
