"""Emulation backend: the board's buffers with the FPGA replaced by the bit-exact executor.

The device side does what the accelerator's DMA engines and dataflow pipeline do: read the packed
input stream, compute the hardware graph's function (``hwexec.HardwareProgram``, numpy only), and
write the output stream packed at the output data type's width, truncating like a hardware stream
of that width would. It computes the accelerator's function; it is not a mock.
"""

from __future__ import annotations

import numpy as np

from maskbnn_board.accelerator import Accelerator
from maskbnn_board.deployment import Deployment
from maskbnn_board.errors import DeploymentError, DriverError
from maskbnn_board.packing import pack, unpack


class EmulatedAccelerator(Accelerator):
    """Accelerator whose device stages run the hardware-graph program on the host."""

    backend = "emulate"

    def __init__(self, deployment: Deployment, batch_size: int = 100, program=None):
        super().__init__(deployment.settings, batch_size)
        if program is None:
            program = load_program(deployment)
        self.program = program
        s = self.settings
        self._ibuf = np.zeros(s.input.with_batch("packed", batch_size), np.uint8)
        self._obuf = np.zeros(s.output.with_batch("packed", batch_size), np.uint8)

    def copy_in(self, packed: np.ndarray) -> None:
        if packed.shape[1:] != self._ibuf.shape[1:] or len(packed) > len(self._ibuf):
            raise DriverError(f"packed input {packed.shape} does not fit buffer {self._ibuf.shape}")
        self._ibuf[: len(packed)] = packed

    def run(self, n: int) -> None:
        s = self.settings
        # input DMA: the stream words as the first layer receives them
        words = unpack(self._ibuf[:n], s.input.dtype, s.input.values_per_word)
        images = words.reshape(s.input.with_batch("normal", n)).astype(np.uint8)
        out = np.asarray(self.program.run(images))
        if out.size != n * int(np.prod(s.output.normal)):
            raise DeploymentError(
                f"the emulation program returned {out.shape} for {n} images, but the settings "
                f"declare outputs of shape {s.output.normal}: program and settings are from "
                "different builds"
            )
        if out.dtype.kind == "f":
            ints = np.rint(out).astype(np.int64)
            if not np.array_equal(ints, out):
                raise DriverError("the emulation program returned non-integer outputs")
            out = ints
        folded = out.reshape(s.output.with_batch("folded", n))
        # output DMA: the stream is odt bits wide, so values outside odt wrap as in hardware
        self._obuf[:n] = pack(folded, s.output.dtype, wrap=True)

    def copy_out(self, n: int) -> np.ndarray:
        return self._obuf[:n].copy()


def load_program(deployment: Deployment):
    """The hardware-graph program named by the deployment's manifest (hash-checked)."""
    path = deployment.checked_path("program")
    try:
        from maskbnn_board.hwexec import HardwareProgram
    except ImportError as err:
        raise DriverError(
            "this driver build has no hardware-graph executor (maskbnn_board.hwexec); the "
            "emulation backend needs it"
        ) from err
    return HardwareProgram.load(path)
