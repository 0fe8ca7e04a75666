"""The concentrator half of ``lora-gateway doctor``: open the configured board and ask it.

The same checks run against a real board (spidev + GPIO) and against the
emulator, which is how they are tested: with ``spi_device = "emulator"`` the
``sx1302`` backend uses the emulated SPI transport behind the named board's
profile, and ``[concentrator.emulator] fault = "no_answer"`` makes the chip
silent, as a board that is unseated or held in reset would be.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.config import Config
from gateway.doctor_result import CheckResult, fail
from hal.backends import open_emulated, open_sx1302
from hal.backends_usb import open_sx1302_usb
from hal.doctor_checks import run_concentrator_checks
from hal.emulator.gps import GpsEmulator
from hal.emulator.stepping_clock import SteppingClock
from hal.errors import HalError
from hal.gps_time import GpsClock, GpsReader, open_gps_port
from hal.sx1302 import Sx1302Concentrator
from hardware.board import BoardError

GpsFactory = Callable[[], GpsReader]


Opened = tuple[Sx1302Concentrator, Callable[[float], None], "GpsFactory | None"]


def open_for_doctor(config: Config) -> Opened:
    """The concentrator, the sleep to use with it, and (emulated) its GPS receiver."""
    c = config.concentrator
    if c.backend == "emulator" or c.spi_device == "emulator":
        board = "emulator" if c.backend == "emulator" else c.board
        clock = SteppingClock()
        conc, emulator = open_emulated(eui=bytes.fromhex(c.emulator.eui), board=board,
                                       clock=clock)
        emulator.no_answer = c.emulator.fault == "no_answer"
        clock.gps = GpsEmulator(emulator)
        gps_port = clock.gps

        def emulated_gps() -> GpsReader:
            return GpsReader(gps_port, conc.pps_counter_us, GpsClock(clock))

        return conc, clock.sleep, emulated_gps
    if c.backend == "sx1302_usb":
        return open_sx1302_usb(c.usb_device, load_images=False), time.sleep, None
    conc = open_sx1302(c.spi_device, c.board, firmware_dir=c.firmware_dir, load_images=False)
    return conc, time.sleep, None


def concentrator_checks(config: Config) -> tuple[list[CheckResult], str | None]:
    """Run the HAL's checks in order; returns them and the EUI (hex) when it was read."""
    try:
        conc, sleep, emulated_gps = open_for_doctor(config)
    except (HalError, BoardError, OSError, ImportError) as exc:
        return [fail("concentrator", f"cannot open the concentrator: {exc}",
                     "check concentrator.spi_device, concentrator.board and that SPI/GPIO "
                     "are enabled")], None
    gps_profile = conc.board.gps

    def gps_reader() -> GpsReader:
        assert gps_profile is not None
        return GpsReader(open_gps_port(gps_profile.uart, gps_profile.baudrate),
                         conc.pps_counter_us, GpsClock())

    try:
        checks = run_concentrator_checks(conc, sleep=sleep, gps=emulated_gps or gps_reader)
    finally:
        conc.close()
    results = [CheckResult(c.name, c.status, c.detail, c.hint) for c in checks]
    eui = next((r.detail for r in results if r.name == "eui" and r.status == "ok"), None)
    return results, eui
