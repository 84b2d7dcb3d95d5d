"""Helpers for running the board half against the PYNQ double (tests/doubles/pynq)."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

from maskbnn.paths import REPO_ROOT

DOUBLES = REPO_ROOT / "tests" / "doubles"
IODMA_VLNV = "xilinx.com:hls:{}:1.0"

HWH = """<?xml version="1.0" encoding="UTF-8"?>
<EDKSYSTEM EDWVERSION="1.2" TIMESTAMP="Thu Jan  1 00:00:00 1970" VIVADOVERSION="2024.2">
  <MODULES>
    <MODULE FULLNAME="/zynq_ps" INSTANCE="zynq_ps" MODTYPE="processing_system7"
            VLNV="xilinx.com:ip:processing_system7:5.5">
      <PARAMETERS>
        <PARAMETER NAME="PCW_FPGA0_PERIPHERAL_FREQMHZ" VALUE="{reference}"/>
      </PARAMETERS>
      <MEMORYMAP>
{memranges}
      </MEMORYMAP>
    </MODULE>
    <MODULE FULLNAME="/clk_wiz_0" INSTANCE="clk_wiz_0" MODTYPE="clk_wiz"
            VLNV="xilinx.com:ip:clk_wiz:6.0">
      <PARAMETERS>
        <PARAMETER NAME="PRIM_IN_FREQ" VALUE="{reference}"/>
        <PARAMETER NAME="CLKOUT1_REQUESTED_OUT_FREQ" VALUE="{accel}"/>
      </PARAMETERS>
    </MODULE>
{modules}
  </MODULES>
</EDKSYSTEM>
"""
MEMRANGE = (
    '        <MEMRANGE ADDRESSBLOCK="Reg" BASENAME="C_BASEADDR" BASEVALUE="{base:#010X}" '
    'HIGHNAME="C_HIGHADDR" HIGHVALUE="{high:#010X}" INSTANCE="{name}" IS_DATA="TRUE" '
    'IS_INSTRUCTION="TRUE" MASTERBUSINTERFACE="M_AXI_GP0" MEMTYPE="REGISTER" SLAVEBUSINTERFACE="s_axi_control"/>'
)
MODULE = (
    '    <MODULE FULLNAME="/{name}" INSTANCE="{name}" MODTYPE="{name}" VLNV="{vlnv}">'
    '<PARAMETERS><PARAMETER NAME="C_S_AXI_CONTROL_ADDR_WIDTH" VALUE="6"/></PARAMETERS></MODULE>'
)


def write_hwh(path: Path, accel_mhz: float = 100.0, reference_mhz: float = 100.0,
              ips: tuple[str, ...] = ("idma0", "odma0")) -> Path:  # fmt: skip
    """A hardware description shaped like the one Vivado writes for FINN+'s Zynq shell: the PS
    with one AXI-lite range per IODMA, and the clocking wizard FCLK0 feeds."""
    ranges, modules = [], []
    for i, name in enumerate(ips):
        base = 0x4000_0000 + i * 0x1_0000
        ranges.append(MEMRANGE.format(base=base, high=base + 0xFFFF, name=name))
        modules.append(MODULE.format(name=name, vlnv=IODMA_VLNV.format(name)))
    text = HWH.format(reference=reference_mhz, accel=accel_mhz, memranges="\n".join(ranges),
                      modules="\n".join(modules))  # fmt: skip
    path.write_text(text)
    return path


def fake_bitstream(folder: Path, accel_mhz: float = 100.0, reference_mhz: float = 100.0) -> Path:
    """A .bit (never configured into anything: the double programs the emulated accelerator of
    the deployment it lands in) with its .hwh beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    bit = folder / "accel.bit"
    bit.write_bytes(b"\x00\x09\x0f\xf0" * 1024)
    write_hwh(bit.with_suffix(".hwh"), accel_mhz, reference_mhz)
    return bit


def double_env() -> dict[str, str]:
    """The environment of a process that sees the PYNQ double as `pynq`."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(DOUBLES), str(REPO_ROOT / "driver"), env.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    return env


@contextmanager
def pynq_double():
    """`import pynq` gives the double inside the block (fresh board state), nothing after."""
    sys.path.insert(0, str(DOUBLES))
    for name in [m for m in sys.modules if m == "pynq" or m.startswith("pynq.")]:
        del sys.modules[name]
    try:
        import pynq

        yield pynq
    finally:
        sys.path.remove(str(DOUBLES))
        for name in [m for m in sys.modules if m == "pynq" or m.startswith("pynq.")]:
            del sys.modules[name]
