"""A PYNQ double for tests: the parts of the PYNQ 2.7 / 3.0 API that maskbnn_board's pynq backend and
finn-plus-driver's FINNDMAOverlay use, under PYNQ's own names and signatures, over a simulated board
(``pynq._board``: DDR with a CPU cache view, FINN's IODMA registers, FCLK0, and the project's
emulated accelerator as the programmable logic). Only tests put it on the path; the product never
imports it. What it cannot stand for (the real DMA engines, clocks, .hwh of a real build) only a
board proves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import ps  # noqa: F401 (pynq.ps, as `import pynq` provides it)
from ._board import BOARD, parse_hwh

__version__ = "3.0.1"  # the API level the double follows (2.7 and 3.0 share these names)


class Device:
    """The FPGA device registry; the double's board has one Zynq-7000 device."""

    devices: list = []
    active_device = None

    def __init__(self, tag: str = "zynq7000") -> None:
        self.name = tag


Device.devices = [Device()]
Device.active_device = Device.devices[0]


class PynqBuffer(np.ndarray):
    """A physically contiguous buffer. The array is the CPU's view; a cacheable buffer's memory,
    which the DMA engines read and write, follows it only through flush() and invalidate(). As in
    PYNQ, a contiguous slice is a buffer too: its address is offset, and its flush() covers it."""

    def __array_finalize__(self, obj) -> None:
        if isinstance(obj, PynqBuffer) and getattr(obj, "_memory", None) is not None:
            offset = self.virtual_address - obj.virtual_address
            self.device_address = obj.device_address + offset
            self.coherent, self._memory = obj.coherent, obj._memory
            self._offset = obj._offset + offset
        else:
            self.device_address, self.coherent, self._memory, self._offset = None, None, None, 0
        self._owner = False

    @property
    def physical_address(self) -> int:
        return self.device_address

    @property
    def virtual_address(self) -> int:
        return self.__array_interface__["data"][0]

    @property
    def cacheable(self) -> bool:
        return not self.coherent

    def _span(self) -> tuple[np.ndarray, np.ndarray]:
        if self._memory is None or not self.flags.c_contiguous:
            raise ValueError("flush/invalidate need a contiguous part of an allocated buffer")
        memory = self._memory[self._offset : self._offset + self.nbytes]
        return np.asarray(self).reshape(-1).view(np.uint8), memory

    def flush(self) -> None:
        if not self.coherent:
            cpu, memory = self._span()
            memory[:] = cpu

    def invalidate(self) -> None:
        if not self.coherent:
            cpu, memory = self._span()
            cpu[:] = memory

    def sync_to_device(self) -> None:
        self.flush()

    def sync_from_device(self) -> None:
        self.invalidate()

    def freebuffer(self) -> None:
        if self._owner:
            BOARD.memory.free(self.device_address)
            self._owner = False

    def close(self) -> None:
        """Kept by PYNQ for backwards compatibility; frees nothing."""


def allocate(shape, dtype="u4", target=None, **kwargs) -> PynqBuffer:
    """pynq.allocate: a zeroed buffer of ``shape`` and ``dtype``; ``cacheable`` as on Zynq."""
    cacheable = bool(kwargs.get("cacheable", False))
    host = np.zeros(shape, dtype)
    addr, memory = BOARD.memory.allocate(host.nbytes)
    if not cacheable:  # the CPU writes straight to memory
        host = memory.view(host.dtype).reshape(host.shape)
    buf = host.view(PynqBuffer)
    buf.device_address, buf.coherent, buf._memory, buf._offset = addr, not cacheable, memory, 0
    buf._owner = True
    return buf


class MMIO:
    """AXI-lite access to one IP's register space."""

    def __init__(self, base_addr: int, length: int = 4, device=None, **kwargs) -> None:
        self.base_addr, self.length = base_addr, length
        self._ip = next(
            (n for n, d in _ip_dict().items() if d["phys_addr"] == base_addr), f"{base_addr:#x}"
        )

    def read(self, offset: int = 0, **kwargs) -> int:
        if offset % 4:
            raise MemoryError("Unaligned read: offset must be multiple of 4.")
        return BOARD.read(self._ip, offset)

    def write(self, offset: int, data) -> None:
        if offset % 4:
            raise MemoryError("Unaligned write: offset must be multiple of 4.")
        BOARD.write(self._ip, offset, data)


class DefaultIP:
    """The driver PYNQ binds to an IP without a more specific one: register read/write."""

    def __init__(self, description: dict) -> None:
        self.description = description
        self.mmio = MMIO(description["phys_addr"], description["addr_range"])

    def read(self, offset: int = 0) -> int:
        return self.mmio.read(offset)

    def write(self, offset: int, value) -> None:
        self.mmio.write(offset, value)


_LOADED: dict = {}


def _ip_dict() -> dict:
    return _LOADED.get("ip_dict", {})


class Bitstream:
    """A .bit file to download to the PL."""

    def __init__(self, bitfile_name, dtbo=None, partial: bool = False, device=None) -> None:
        self.bitfile_name = str(bitfile_name)
        if not Path(self.bitfile_name).is_file():
            raise OSError(f"Bitstream file {bitfile_name} does not exist.")
        self.partial = partial

    def download(self, parameters=None) -> None:
        hwh = Path(self.bitfile_name).with_suffix(".hwh")
        ip_dict, params = parse_hwh(hwh)
        BOARD.program(Path(self.bitfile_name), ip_dict, params)
        _LOADED.update(ip_dict=ip_dict, params=params)


class Overlay(Bitstream):
    """A bitstream with its hardware description (the .hwh of the same stem beside it): ip_dict,
    and one driver attribute per IP (``overlay.idma0``)."""

    def __init__(self, bitfile_name, dtbo=None, download: bool = True, ignore_version: bool = False,
                 device=None) -> None:  # fmt: skip
        super().__init__(bitfile_name, dtbo, device=device)
        hwh = Path(self.bitfile_name).with_suffix(".hwh")
        if not hwh.is_file():
            raise ValueError(f"Cannot find HWH file for {bitfile_name}.")
        self.device = device or Device.active_device
        self.ip_dict, self._params = parse_hwh(hwh)
        if download:
            self.download()
        self._ips = {name: DefaultIP(d) for name, d in self.ip_dict.items()}

    def __getattr__(self, name: str):
        ips = self.__dict__.get("_ips", {})
        if name in ips:
            return ips[name]
        raise AttributeError(f"Could not find IP or hierarchy {name} in overlay")

    def is_loaded(self) -> bool:
        return _LOADED.get("ip_dict") is self.ip_dict or _LOADED.get("ip_dict") == self.ip_dict
