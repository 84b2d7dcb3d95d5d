"""What the driver reads from the bitstream's hardware description (.hwh, Vivado's XML handoff).

FINN+'s Zynq shell feeds FCLK0 into a Clocking Wizard (``clk_wiz_0``) that makes the accelerator
clock, so FCLK0 must be the wizard's input frequency, never the accelerator clock. PYNQ's
``ip_dict`` lists only AXI-lite slaves, and the wizard has none, so its parameters are read here.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from maskbnn_board.errors import DeploymentError

CLOCK_WIZARD = "clk_wiz_0"
# FINN+ 1.6.1 configures its clocking wizard for a fixed 100 MHz input (as its own driver assumes)
DEFAULT_REFERENCE_MHZ = 100.0


def module_parameters(hwh: Path, instance: str) -> dict[str, str]:
    """PARAMETER name -> value of one MODULE instance; empty when the design has no such module."""
    try:
        root = ET.parse(str(hwh)).getroot()
    except ET.ParseError as err:
        raise DeploymentError(f"{hwh} is not a readable hardware description: {err}") from err
    for module in root.iter("MODULE"):
        if module.get("INSTANCE") == instance:
            return {p.get("NAME", ""): p.get("VALUE", "") for p in module.iter("PARAMETER")}
    return {}


def _mhz(params: dict[str, str], *names: str) -> float | None:
    for name in names:
        if params.get(name):
            try:
                return float(params[name])
            except ValueError as err:
                raise DeploymentError(
                    f"{CLOCK_WIZARD} {name} is not a number: {params[name]!r}"
                ) from err
    return None


def clocks(hwh: Path) -> tuple[float, float | None]:
    """(FCLK0 reference the wizard expects, the accelerator clock it makes or None if unknown)."""
    params = module_parameters(hwh, CLOCK_WIZARD)
    reference = _mhz(params, "PRIM_IN_FREQ") or DEFAULT_REFERENCE_MHZ
    return reference, _mhz(params, "CLKOUT1_OUT_FREQ", "CLKOUT1_REQUESTED_OUT_FREQ")
