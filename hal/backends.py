"""Named ways to open a concentrator: the emulator, or an SX1302 on a Pi's SPI bus.

Each backend imports its hardware libraries only when chosen, so the emulator
runs anywhere and CI never imports spidev or gpiod.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from hal.emulator.chip import DEFAULT_EUI, Sx1302Emulator
from hal.interface import OutputLine
from hal.sx1302 import Sx1302Concentrator
from hardware.board import get_board


def _no_wait(_seconds: float) -> None:
    """The emulator needs no settling time after resets."""


def open_emulated(*, eui: bytes | None = None, clock: Callable[[], float] = time.monotonic,
                  record_transcript: bool = False,
                  counter_start_ticks: int = 0) -> tuple[Sx1302Concentrator, Sx1302Emulator]:
    """The real driver wired to an emulated chip; the emulator is returned for injection."""
    emulator = Sx1302Emulator(eui=eui if eui is not None else DEFAULT_EUI, clock=clock,
                              record_transcript=record_transcript,
                              counter_start_ticks=counter_start_ticks)
    concentrator = Sx1302Concentrator(emulator, board=get_board("emulator"),
                                      spi_name="emulator", sleep=_no_wait)
    return concentrator, emulator


def open_sx1302(spi_device: str, board: str) -> Sx1302Concentrator:
    """The driver on a real SPI device, with the board's reset and power pins."""
    from hal.gpio import open_output_line
    from hal.spi import SpidevTransport

    profile = get_board(board)
    transport = SpidevTransport(spi_device)
    lines: list[OutputLine] = []
    try:
        reset = open_output_line(profile.reset_pin) if profile.reset_pin is not None else None
        if reset is not None:
            lines.append(reset)
        power = open_output_line(profile.power_pin) if profile.power_pin is not None else None
    except Exception:
        transport.close()
        for line in lines:
            line.close()
        raise
    return Sx1302Concentrator(transport, reset=reset, power=power, board=profile,
                              spi_name=spi_device)
