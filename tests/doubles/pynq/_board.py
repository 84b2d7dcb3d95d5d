"""The simulated board behind the PYNQ double: DDR, the PL's IODMA registers, FCLK0.

Not PYNQ API (hence the underscore): tests read the register log and the bytes the input DMA saw
from here. The accelerator's function is the project's emulated accelerator, built from the
deployment folder the bitstream sits in (manifest.json beside the .bit), and it sees only the
bytes in *memory*: a cacheable buffer's CPU view reaches memory only through flush(), and memory
reaches the CPU view only through invalidate(), as on the Zynq's ARM cores.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

AP_START, AP_DONE, AP_IDLE = 0x1, 0x2, 0x4
REG_CTRL, REG_ADDR_LO, REG_ADDR_HI, REG_COUNT = 0x00, 0x10, 0x14, 0x1C
REGISTERS = (REG_CTRL, REG_ADDR_LO, REG_ADDR_HI, REG_COUNT)
MEMORY_BASE = 0x1680_0000  # where the Zynq-7000 CMA pool usually starts; any 4 KiB-aligned base


class ProtocolError(RuntimeError):
    """A driver used the IODMA register protocol or PYNQ's buffers in a way hardware would not
    survive (a hang, a DMA to a wrong address, stale data)."""


class Memory:
    """Physically contiguous buffers, each a byte array at an address."""

    def __init__(self) -> None:
        self.regions: dict[int, np.ndarray] = {}
        self.next = MEMORY_BASE

    def allocate(self, nbytes: int) -> tuple[int, np.ndarray]:
        addr = self.next
        self.regions[addr] = np.zeros(nbytes, np.uint8)
        self.next += (max(nbytes, 1) + 0xFFF) & ~0xFFF
        return addr, self.regions[addr]

    def free(self, addr: int) -> None:
        self.regions.pop(addr, None)

    def view(self, addr: int, nbytes: int, what: str) -> np.ndarray:
        for base, mem in self.regions.items():
            if base <= addr < base + len(mem):
                if addr + nbytes > base + len(mem):
                    raise ProtocolError(
                        f"{what}: {nbytes} bytes from {addr:#x} run past the end of the buffer "
                        f"at {base:#x} ({len(mem)} bytes): the image count does not match the buffer"
                    )
                return mem[addr - base : addr - base + nbytes]
        raise ProtocolError(f"{what}: address {addr:#x} is not inside any allocated buffer")


def parse_hwh(path: Path) -> tuple[dict, dict[str, dict[str, str]]]:
    """ip_dict entries (AXI-lite slaves of the PS, from its MEMORYMAP) and every module's
    parameters, from a Vivado hardware handoff file."""
    root = ET.parse(path).getroot()
    ips: dict = {}
    params: dict[str, dict[str, str]] = {}
    for module in root.iter("MODULE"):
        inst = module.get("INSTANCE", "")
        params[inst] = {p.get("NAME", ""): p.get("VALUE", "") for p in module.iter("PARAMETER")}
        for mr in module.iter("MEMRANGE"):
            if mr.get("MEMTYPE") != "REGISTER":
                continue
            base, high = int(mr.get("BASEVALUE", "0"), 16), int(mr.get("HIGHVALUE", "0"), 16)
            ips[mr.get("INSTANCE")] = {"phys_addr": base, "addr_range": high - base + 1}
    for name, entry in ips.items():
        entry.update({"type": params.get(name, {}).get("VLNV", ""), "fullpath": name})
        entry.update({"parameters": params.get(name, {}), "registers": {}, "state": None})
    return ips, params


class Board:
    """One PYNQ board: memory, FCLK0, and the programmable logic of the last downloaded overlay."""

    def __init__(self) -> None:
        self.memory = Memory()
        self.reset_pl()
        self.fclk0_mhz: float | None = None

    def reset_pl(self) -> None:
        self.log: list[tuple] = []  # (ip, "read"/"write", offset, value) in call order
        self.regs: dict[str, dict[int, int]] = {}
        self.written: dict[str, set[int]] = {}
        self.state: dict[str, str] = {}  # ip -> idle / busy
        self.pending: dict[str, int] = {}  # started count per DMA
        self.done: dict[str, bool] = {}
        self.inputs_seen: list[np.ndarray] = []
        self.deployment = None
        self.hw_program = None
        self.idma: str | None = None
        self.odma: str | None = None
        self.reference_mhz: float | None = None

    def program(self, bitfile: Path, ip_dict: dict, params: dict) -> None:
        """Load the accelerator: the emulated one of the deployment the bitstream belongs to."""
        from maskbnn_board.backend_emulate import load_program
        from maskbnn_board.deployment import Deployment

        self.reset_pl()
        dep = Deployment(Path(bitfile).parent)
        s = dep.settings
        self.deployment, self.hw_program = dep, load_program(dep)
        self.idma, self.odma = s.input.dma_name, s.output.dma_name
        for ip in (self.idma, self.odma):
            if ip not in ip_dict:
                raise ProtocolError(f"the hardware description has no {ip}")
            self.regs[ip], self.written[ip], self.state[ip] = {}, set(), "idle"
            self.done[ip] = False
        wiz = params.get("clk_wiz_0")
        self.reference_mhz = float(wiz["PRIM_IN_FREQ"]) if wiz and "PRIM_IN_FREQ" in wiz else None

    # --- AXI-lite --------------------------------------------------------------------------
    def write(self, ip: str, offset: int, value) -> None:
        if type(value) is not int:  # PYNQ's MMIO.write: `type(data) is int`, or bytes
            raise ValueError(f"Data type must be int or bytes. ({ip} @ {offset:#x}: {type(value)})")
        if not 0 <= value < 1 << 32:
            raise ProtocolError(f"{ip} @ {offset:#x}: {value} does not fit a 32-bit register")
        self.log.append((ip, "write", offset, value))
        if ip not in self.regs:
            return  # an IP the accelerator model does not cover
        if offset not in REGISTERS:
            raise ProtocolError(f"{ip}: no IODMA register at {offset:#x}")
        if offset != REG_CTRL:
            self.regs[ip][offset] = value
            self.written[ip].add(offset)
        elif value & AP_START:
            self._start(ip)

    def read(self, ip: str, offset: int) -> int:
        if ip in self.regs and offset == REG_CTRL:
            value = AP_IDLE if self.state[ip] == "idle" else AP_START
            if self.done[ip]:
                value |= AP_DONE
                self.done[ip] = False  # ap_done is clear-on-read in HLS's ap_ctrl_hs block
        else:
            value = self.regs.get(ip, {}).get(offset, 0)
        self.log.append((ip, "read", offset, value))
        return value

    def _start(self, ip: str) -> None:
        if self.state[ip] != "idle":
            raise ProtocolError(f"{ip} started while busy")
        missing = {REG_ADDR_LO, REG_ADDR_HI, REG_COUNT} - self.written[ip]
        if missing:
            names = ", ".join(f"{o:#x}" for o in sorted(missing))
            raise ProtocolError(f"{ip} started without writing {names} since its last run")
        if self.reference_mhz is not None and self.fclk0_mhz != self.reference_mhz:
            raise ProtocolError(
                f"FCLK0 is {self.fclk0_mhz} MHz but the clocking wizard (clk_wiz_0) expects a "
                f"{self.reference_mhz} MHz reference: the accelerator clock would be wrong"
            )
        self.written[ip] = set()
        self.state[ip] = "busy"
        self.pending[ip] = self.regs[ip][REG_COUNT]
        if self.idma in self.pending and self.odma in self.pending:
            self._compute()

    def _address(self, ip: str) -> int:
        return self.regs[ip][REG_ADDR_LO] | self.regs[ip][REG_ADDR_HI] << 32

    def _compute(self) -> None:
        n_in, n_out = self.pending.pop(self.idma), self.pending.pop(self.odma)
        if n_in != n_out:
            raise ProtocolError(f"{self.idma} streams {n_in} images, {self.odma} expects {n_out}")
        from maskbnn_board.backend_emulate import EmulatedAccelerator

        acc = EmulatedAccelerator(self.deployment, batch_size=n_in, program=self.hw_program)
        s = acc.settings
        in_bytes, out_bytes = (int(np.prod(x.packed)) for x in (s.input, s.output))
        src = self.memory.view(self._address(self.idma), n_in * in_bytes, self.idma)
        dst = self.memory.view(self._address(self.odma), n_out * out_bytes, self.odma)
        packed = src.reshape(s.input.with_batch("packed", n_in)).copy()
        self.inputs_seen.append(packed)
        acc.copy_in(packed)
        acc.run(n_in)
        dst[:] = acc.copy_out(n_in).reshape(-1)
        for ip in (self.idma, self.odma):
            self.state[ip], self.done[ip] = "idle", True


BOARD = Board()
