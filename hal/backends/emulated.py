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
from hal.emulator.chip import DEFAULT_EUI, MODEL_SX1302, MODEL_SX1303, Sx1302Emulator
from hal.emulator.gps import FreeRunningGps, GpsEmulator
from hal.emulator.stepping_clock import SteppingClock
from hal.emulator.sx1261 import Sx1261Emulator
from hal.firmware import (
    DEFAULT_FIRMWARE_DIR,
    KNOWN_SHA256,
    FirmwareImages,
    load_firmware,
    load_sx1261_patch,
)
from hal.gps_time import GpsClock, GpsReader
from hal.lbt import LbtSettings, ListenBeforeTalk
from hal.sx1261 import Sx1261
from hal.sx1302 import Sx1302Concentrator
from hardware.board import get_board


def _no_wait(_seconds: float) -> None:
    """The emulator needs no settling time after resets."""


def open_emulated(*, eui: bytes | None = None, clock: Callable[[], float] = time.monotonic,
                  record_transcript: bool = False, counter_start_ticks: int = 0,
                  board: str = "emulator", firmware_dir: Path | None = None,
                  require_firmware: bool = False,
                  firmware_sha256: Mapping[str, frozenset[str]] = KNOWN_SHA256,
                  model_id: int = MODEL_SX1302, lbt: LbtSettings | None = None,
                  sleep: Callable[[float], None] | None = None,
                  ) -> tuple[Sx1302Concentrator, Sx1302Emulator]:
    """The real driver wired to an emulated chip; the emulator is returned for injection.

    By default no firmware files are needed. With ``require_firmware`` the images
    are loaded from ``firmware_dir`` (default: the installed location) and checked
    against ``firmware_sha256``, and the emulator demodulates nothing until the
    driver has loaded exactly those images and completed both MCU handshakes (and,
    with ``lbt``, the SX1261 takes LBT commands only once patched with that image).

    A board with an SX1261 gets an emulated one as ``emulator.sx1261`` (its air:
    ``noise_floor_dbm`` and ``busy``); ``lbt`` turns listen-before-talk on.
    ``sleep`` is what the driver waits with (default: not at all).
    """
    images: FirmwareImages | None = None
    patch: bytes | None = None
    if require_firmware:
        images = load_firmware(firmware_dir or DEFAULT_FIRMWARE_DIR, firmware_sha256)
        if lbt is not None:
            patch = load_sx1261_patch(firmware_dir or DEFAULT_FIRMWARE_DIR, firmware_sha256)
    profile = get_board(board)
    emulator = Sx1302Emulator(
        eui=eui if eui is not None else DEFAULT_EUI, clock=clock, board=profile,
        record_transcript=record_transcript, counter_start_ticks=counter_start_ticks,
        model_id=model_id, require_firmware=require_firmware,
        expected_firmware=(images.agc, images.arb) if images is not None else None)
    temperature = (temperature_reader(profile, emulator.sensor)
                   if profile.temperature_sensor is not None else None)
    wait = sleep or _no_wait
    listen: ListenBeforeTalk | None = None
    if profile.lbt_radio is not None:
        emulator.sx1261 = Sx1261Emulator(expected_patch=patch, require_patch=patch is not None,
                                         clock=clock)
        if lbt is not None:
            listen = ListenBeforeTalk(Sx1261(emulator.sx1261, wait), lbt, wait)
    elif lbt is not None:
        raise ValueError(f"board {profile.name!r} has no SX1261 for listen-before-talk")
    concentrator = Sx1302Concentrator(emulator, board=profile, spi_name="emulator",
                                      sleep=wait, firmware=images, temperature=temperature,
                                      clock=clock, lbt=listen, sx1261_patch=patch)
    return concentrator, emulator


def _scanner(chip: Sx1302Emulator, sleep: Callable[[float], None]) -> Callable[[], Sx1261]:
    def open_scanner() -> Sx1261:
        if chip.sx1261 is None:
            raise ValueError("the emulated board has no SX1261")
        return Sx1261(chip.sx1261, sleep)

    return open_scanner


def _model_id(settings: RadioSettings) -> int:
    return MODEL_SX1303 if settings.model == "SX1303" else MODEL_SX1302


def set_air(chip: Sx1302Emulator, settings: RadioSettings) -> None:
    """The configured noise floor and occupied channels, as the emulated SX1261 hears them."""
    if chip.sx1261 is not None:
        chip.sx1261.noise_floor_dbm = settings.noise_floor_dbm
        chip.sx1261.busy = dict(settings.busy_channels)


def open_radio(settings: RadioSettings, purpose: Purpose) -> Radio:
    """The registry's opener for the emulated chip (and for ``spi_device = "emulator"``)."""
    board = settings.board if settings.backend == "sx1302" else "emulator"
    if purpose == "inspect":
        return _inspected(settings, board)
    driver, chip = open_emulated(eui=settings.eui, board=board, lbt=settings.lbt,
                                 model_id=_model_id(settings))
    chip.no_answer = settings.fault == "no_answer"
    set_air(chip, settings)

    def open_gps() -> GpsReader:
        port = FreeRunningGps(chip, gps_seconds=settings.gps_start_s)
        return GpsReader(port, driver.pps_counter_us, GpsClock())

    return sx1302_radio(driver, sleep=time.sleep, open_gps=open_gps, emulator=chip,
                        open_scanner=_scanner(chip, time.sleep))


def _inspected(settings: RadioSettings, board: str) -> Radio:
    """On a stepping clock: sleeping advances the chip's counter and its GPS seconds."""
    clock = SteppingClock()
    driver, chip = open_emulated(eui=settings.eui, board=board, clock=clock,
                                 model_id=_model_id(settings))
    chip.no_answer = settings.fault == "no_answer"
    set_air(chip, settings)
    port = GpsEmulator(chip, gps_seconds=settings.gps_start_s)
    clock.gps = port

    def open_gps() -> GpsReader:
        return GpsReader(port, driver.pps_counter_us, GpsClock(clock))

    return sx1302_radio(driver, sleep=clock.sleep, open_gps=open_gps, emulator=chip,
                        open_scanner=_scanner(chip, clock.sleep))
