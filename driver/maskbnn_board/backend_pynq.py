"""Board backend: PYNQ Overlay, physically contiguous buffers, DMA, timeouts instead of busy hangs.

Two DMA flavours, named in the settings (``maskbnn.dma``):
- ``iodma`` (FINN's zynq-iodma platform, the default of FINN's Zynq flow): FINN inserts HLS IODMA
  cores with an AXI-lite control block; the driver writes the buffer address and the image count
  and starts them through the HLS ap_ctrl registers below.
- ``axi_dma``: a Xilinx AXI DMA in simple mode, driven through PYNQ's sendchannel/recvchannel.
"""

from __future__ import annotations

import time

import numpy as np

from maskbnn_board.accelerator import Accelerator
from maskbnn_board.deployment import Deployment
from maskbnn_board.errors import AcceleratorTimeoutError, BoardUnavailableError, DeploymentError
from maskbnn_board.hwh import clocks

# FINN IODMA (HLS, ap_ctrl_hs) AXI-lite register map.
REG_AP_CTRL = 0x00
REG_BUFFER_ADDR = 0x10  # in: source / out: destination, low 32 bits
REG_BUFFER_ADDR_HI = 0x14  # high 32 bits (0 on the 32-bit Zynq-7000, but never left stale)
REG_NUM_REPS = 0x1C  # images in this run
AP_START = 0x1
AP_DONE = 0x2
AP_IDLE = 0x4

DEFAULT_TIMEOUT_S = 10.0
_POLL_S = 20e-6

OFF_BOARD_HINT = (
    "run this on a PYNQ-Z1/Z2 board with the pynq package (pip install 'maskbnn-board[pynq]' on "
    "the board image), or use --backend emulate to run the same driver with the bit-exact "
    "software model of the accelerator"
)


def import_pynq():
    """The pynq module, or a BoardUnavailableError saying why it cannot drive an FPGA here."""
    try:
        import pynq
    except Exception as err:  # ImportError, or pynq failing to find its platform at import
        raise BoardUnavailableError(
            f"the pynq backend cannot start: {err}. {OFF_BOARD_HINT}"
        ) from err
    try:
        devices = list(pynq.Device.devices)
    except AttributeError:  # an old PYNQ without the device registry: let Overlay decide
        return pynq
    except Exception as err:
        raise BoardUnavailableError(f"pynq found no FPGA device: {err}. {OFF_BOARD_HINT}") from err
    if not devices:
        raise BoardUnavailableError(f"pynq found no FPGA device on this machine. {OFF_BOARD_HINT}")
    return pynq


def _address(buf) -> int:
    return int(getattr(buf, "device_address", None) or buf.physical_address)


def _wait(ready, what: str, timeout_s: float) -> None:
    deadline = time.perf_counter() + timeout_s
    while not ready():
        if time.perf_counter() > deadline:
            raise AcceleratorTimeoutError(
                f"{what} did not finish within {timeout_s:.1f} s: the accelerator is stalled or the "
                "loaded bitstream is not the one these settings describe"
            )
        time.sleep(_POLL_S)


class PynqAccelerator(Accelerator):
    """The accelerator on the FPGA, driven through PYNQ."""

    backend = "pynq"

    def __init__(
        self,
        deployment: Deployment,
        batch_size: int = 100,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        download: bool = True,
    ):
        super().__init__(deployment.settings, batch_size)
        if not deployment.role_name("bitstream"):
            raise DeploymentError(
                f"{deployment.root} holds no bitstream (it was deployed without a Vivado build): "
                "build one on a machine with Vivado (`make docker-bitstream NET=...`) and re-run "
                "`make deploy`, or use --backend emulate"
            )
        bit = deployment.checked_path("bitstream")
        hwh = deployment.checked_path("hwh")
        pynq = import_pynq()
        if hwh.with_suffix(".bit") != bit:
            # PYNQ finds the hardware description next to the bitstream, by stem
            raise DeploymentError(f"{hwh.name} must sit beside {bit.name} with the same stem")
        self.timeout_s = timeout_s
        reference, accel_mhz = clocks(hwh)
        built = self.settings.fclk_mhz
        if accel_mhz is not None and built is not None and abs(accel_mhz - built) > 1e-3:
            raise DeploymentError(
                f"settings.json says the accelerator runs at {built} MHz, its bitstream's clocking "
                f"wizard makes {accel_mhz} MHz: settings and bitstream come from different builds"
            )
        self.overlay = pynq.Overlay(str(bit), download=download)
        from pynq.ps import Clocks

        # FCLK0 is the clocking wizard's reference; the wizard makes the accelerator clock
        Clocks.fclk0_mhz = reference
        s = self.settings
        self.idma = self._ip(s.input.dma_name)
        # an AXI DMA carries both directions under the input stream's name
        self.odma = self.idma if s.dma == "axi_dma" else self._ip(s.output.dma_name)
        cacheable = s.platform == "zynq-iodma"
        self.ibuf = pynq.allocate(
            s.input.with_batch("packed", batch_size), np.uint8, cacheable=cacheable
        )
        self.obuf = pynq.allocate(
            s.output.with_batch("packed", batch_size), np.uint8, cacheable=cacheable
        )

    def _ip(self, name: str):
        if name not in self.overlay.ip_dict:
            raise DeploymentError(
                f"the bitstream has no IP named {name!r} (it has: "
                f"{', '.join(sorted(self.overlay.ip_dict))}); settings and bitstream do not match"
            )
        return getattr(self.overlay, name)

    def copy_in(self, packed: np.ndarray) -> None:
        self.ibuf[: len(packed)] = packed
        self.ibuf.flush()

    def run(self, n: int) -> None:
        if self.settings.dma == "axi_dma":
            self._run_axi_dma(n)
        else:
            self._run_iodma(n)

    def _run_iodma(self, n: int) -> None:
        if not self.odma.read(REG_AP_CTRL) & AP_IDLE:
            raise AcceleratorTimeoutError(
                "the output IODMA is busy before a run: reload the bitstream"
            )
        # output first, so no result is produced before its destination is armed
        for ip, buf in ((self.odma, self.obuf), (self.idma, self.ibuf)):
            addr = _address(buf)
            ip.write(REG_BUFFER_ADDR, addr & 0xFFFFFFFF)
            ip.write(REG_BUFFER_ADDR_HI, (addr >> 32) & 0xFFFFFFFF)
            ip.write(REG_NUM_REPS, int(n))
            ip.write(REG_AP_CTRL, AP_START)
        _wait(lambda: self.odma.read(REG_AP_CTRL) & AP_DONE, "output IODMA", self.timeout_s)

    def _run_axi_dma(self, n: int) -> None:
        dma = self.idma
        in_bytes = n * int(np.prod(self.settings.input.packed))
        out_bytes = n * int(np.prod(self.settings.output.packed))
        dma.recvchannel.transfer(self.obuf, nbytes=out_bytes)
        dma.sendchannel.transfer(self.ibuf, nbytes=in_bytes)
        _wait(lambda: dma.sendchannel.idle, "AXI DMA send", self.timeout_s)
        _wait(lambda: dma.recvchannel.idle, "AXI DMA receive", self.timeout_s)

    def copy_out(self, n: int) -> np.ndarray:
        self.obuf.invalidate()
        return np.array(self.obuf[:n], copy=True)

    def close(self) -> None:
        for buf in (getattr(self, "ibuf", None), getattr(self, "obuf", None)):
            if buf is not None and hasattr(buf, "freebuffer"):
                buf.freebuffer()
