"""The ``emulator`` backend: the real SX1302 driver talking to the SPI-level chip emulator.

Runs anywhere (the demo, every test, CI). For ``run`` the chip follows real time and
its GPS receiver's seconds pass with the chip's clock; for ``inspect`` (doctor) the
chip follows a stepping clock, so the counter and GPS checks complete without waiting.
With ``spi_device = "emulator"`` under the ``sx1302`` backend the same chip sits behind
the named real board's profile, which is how doctor's checks are tested.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path

from hal.backends import Purpose, Radio, RadioSettings
from hal.backends._bundle import sx1302_radio
from hal.backends.spi import temperature_reader
from hal.emulator.chip import DEFAULT_EUI, MODEL_SX1302, Sx1302Emulator
from hal.emulator.gps import FreeRunningGps, GpsEmulator
from hal.emulator.stepping_clock import SteppingClock
from hal.firmware import DEFAULT_FIRMWARE_DIR, KNOWN_SHA256, FirmwareImages, load_firmware
from hal.gps_time import GpsClock, GpsReader
from hal.sx1302 import Sx1302Concentrator
from hardware.board import get_board


def _no_wait(_seconds: float) -> None:
    """The emulator needs no settling time after resets."""


def open_emulated(*, eui: bytes | None = None, clock: Callable[[], float] = time.monotonic,
                  record_transcript: bool = False, counter_start_ticks: int = 0,
                  board: str = "emulator", firmware_dir: Path | None = None,
                  require_firmware: bool = False,
                  firmware_sha256: Mapping[str, frozenset[str]] = KNOWN_SHA256,
                  model_id: int = MODEL_SX1302) -> tuple[Sx1302Concentrator, Sx1302Emulator]:
    """The real driver wired to an emulated chip; the emulator is returned for injection.

    By default no firmware files are needed. With ``require_firmware`` the images
    are loaded from ``firmware_dir`` (default: the installed location) and checked
    against ``firmware_sha256``, and the emulator demodulates nothing until the
    driver has loaded exactly those images and completed both MCU handshakes.
    """
    images: FirmwareImages | None = None
    if require_firmware:
        images = load_firmware(firmware_dir or DEFAULT_FIRMWARE_DIR, firmware_sha256)
    profile = get_board(board)
    emulator = Sx1302Emulator(
        eui=eui if eui is not None else DEFAULT_EUI, clock=clock, board=profile,
        record_transcript=record_transcript, counter_start_ticks=counter_start_ticks,
        model_id=model_id, require_firmware=require_firmware,
        expected_firmware=(images.agc, images.arb) if images is not None else None)
    temperature = (temperature_reader(profile, emulator.sensor)
                   if profile.temperature_sensor is not None else None)
    concentrator = Sx1302Concentrator(emulator, board=profile, spi_name="emulator",
                                      sleep=_no_wait, firmware=images, temperature=temperature,
                                      clock=clock)
    return concentrator, emulator


def open_radio(settings: RadioSettings, purpose: Purpose) -> Radio:
    """The registry's opener for the emulated chip (and for ``spi_device = "emulator"``)."""
    board = settings.board if settings.backend == "sx1302" else "emulator"
    if purpose == "inspect":
        return _inspected(settings, board)
    driver, chip = open_emulated(eui=settings.eui, board=board)
    chip.no_answer = settings.fault == "no_answer"

    def open_gps() -> GpsReader:
        port = FreeRunningGps(chip, gps_seconds=settings.gps_start_s)
        return GpsReader(port, driver.pps_counter_us, GpsClock())

    return sx1302_radio(driver, sleep=time.sleep, open_gps=open_gps, emulator=chip)


def _inspected(settings: RadioSettings, board: str) -> Radio:
    """On a stepping clock: sleeping advances the chip's counter and its GPS seconds."""
    clock = SteppingClock()
    driver, chip = open_emulated(eui=settings.eui, board=board, clock=clock)
    chip.no_answer = settings.fault == "no_answer"
    port = GpsEmulator(chip, gps_seconds=settings.gps_start_s)
    clock.gps = port

    def open_gps() -> GpsReader:
        return GpsReader(port, driver.pps_counter_us, GpsClock(clock))

    return sx1302_radio(driver, sleep=clock.sleep, open_gps=open_gps, emulator=chip)
