"""Wraps an opened SX1302 driver into the :class:`Radio` bundle every opener returns."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from hal.backends import GpsOpener, Radio
from hal.gps_time import GpsClock, GpsReader, open_gps_port
from hal.sx1302 import Sx1302Concentrator
from hal.types import ChannelPlan

if TYPE_CHECKING:
    from hal.doctor_checks import HalCheck
    from hal.emulator.chip import Sx1302Emulator
    from hal.sx1261 import Sx1261


def board_gps(driver: Sx1302Concentrator) -> GpsOpener | None:
    """Opens the board's receiver UART, paired with the chip's PPS-latched counter."""
    receiver = driver.board.gps
    if receiver is None:
        return None

    def open_gps() -> GpsReader:
        return GpsReader(open_gps_port(receiver.uart, receiver.baudrate),
                         driver.pps_counter_us, GpsClock())

    return open_gps


def sx1302_radio(driver: Sx1302Concentrator, *, sleep: Callable[[float], None] = time.sleep,
                 open_gps: GpsOpener | None = None,
                 emulator: Sx1302Emulator | None = None,
                 open_scanner: Callable[[], Sx1261] | None = None) -> Radio:
    """The bundle for one SX1302 driver; ``open_gps`` defaults to the board's UART receiver."""
    gps = open_gps if open_gps is not None else board_gps(driver)
    if driver.board.gps is None:
        gps = None

    def checks(plan: ChannelPlan | None) -> list[HalCheck]:
        from hal.doctor_checks import run_concentrator_checks  # doctor's, not the daemon's

        return run_concentrator_checks(driver, sleep=sleep, plan=plan, gps=gps)

    return Radio(concentrator=driver, board=driver.board, open_gps=gps, sleep=sleep,
                 checks=checks, close=driver.close, emulator=emulator,
                 open_scanner=open_scanner if driver.board.lbt_radio is not None else None)
