"""pynq.ps: the processing system's clocks. Setting ``Clocks.fclk0_mhz`` programs PL clock 0."""

from __future__ import annotations

from ._board import BOARD


class _ClocksMeta(type):
    @property
    def fclk0_mhz(cls) -> float | None:
        return BOARD.fclk0_mhz

    @fclk0_mhz.setter
    def fclk0_mhz(cls, value: float) -> None:
        BOARD.fclk0_mhz = float(value)
        BOARD.log.append(("Clocks", "write", "fclk0_mhz", float(value)))


class Clocks(metaclass=_ClocksMeta):
    """PL clocks of the Zynq PS (only FCLK0 feeds FINN's shell)."""
