"""Named ways to open a concentrator: the emulator, or an SX1302 on a Pi's SPI bus.

Both build the same :class:`Sx1302Concentrator`; only the SPI transport, the GPIO
lines and the I2C bus differ. Hardware libraries are imported only when the
``sx1302`` backend is chosen, so the emulator runs anywhere and CI never imports
spidev or gpiod.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path

from hal.board_power import LineOpener, open_board_lines
from hal.emulator.chip import DEFAULT_EUI, MODEL_SX1302, Sx1302Emulator
from hal.firmware import DEFAULT_FIRMWARE_DIR, KNOWN_SHA256, FirmwareImages, load_firmware
from hal.interface import SpiTransport
from hal.sx1302 import Sx1302Concentrator
from hal.temperature import I2cBus, TemperatureError, find_stts751
from hardware.board import BoardProfile, get_board

I2cOpener = Callable[[str], I2cBus]


def _no_wait(_seconds: float) -> None:
    """The emulator needs no settling time after resets."""


def _temperature_reader(board: BoardProfile, bus: I2cBus) -> Callable[[], float]:
    """Find the sensor lazily, on first use, so a missing one never blocks start-up."""
    sensor_cfg = board.temperature_sensor
    if sensor_cfg is None:
        raise ValueError("board has no temperature sensor")
    found: list[Callable[[], float]] = []

    def read() -> float:
        if not found:
            found.append(find_stts751(bus, sensor_cfg.addresses).read_celsius)
        return found[0]()

    return read


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
    temperature = (_temperature_reader(profile, emulator.sensor)
                   if profile.temperature_sensor is not None else None)
    concentrator = Sx1302Concentrator(emulator, board=profile, spi_name="emulator",
                                      sleep=_no_wait, firmware=images, temperature=temperature,
                                      clock=clock)
    return concentrator, emulator


def _default_i2c_opener(device: str) -> I2cBus:
    from hal.temperature import LinuxI2cBus

    return LinuxI2cBus(device)


def _open_spidev(device: str) -> SpiTransport:
    from hal.spi import SpidevTransport

    return SpidevTransport(device)


def open_sx1302(spi_device: str | None, board: str, *, firmware_dir: Path | None = None,
                firmware_sha256: Mapping[str, frozenset[str]] = KNOWN_SHA256,
                line_opener: LineOpener | None = None, i2c_opener: I2cOpener | None = None,
                spi_opener: Callable[[str], SpiTransport] = _open_spidev,
                load_images: bool = True) -> Sx1302Concentrator:
    """The driver on a real SPI device with the board's GPIO lines, sensor and firmware.

    ``spi_device`` None takes the board profile's. The firmware is checked before
    any hardware is opened, so a missing file is reported first and alone.
    ``load_images`` False skips it (for ``doctor``/``provision``, which never start RX).
    """
    from hal.gpio import open_output_line

    profile = get_board(board)
    images = load_firmware(firmware_dir or DEFAULT_FIRMWARE_DIR, firmware_sha256) \
        if load_images else None
    device = spi_device or profile.spi_device
    transport = spi_opener(device)
    try:
        lines = open_board_lines(profile, line_opener or open_output_line)
    except Exception:
        transport.close()
        raise
    temperature = None
    if profile.temperature_sensor is not None:
        try:
            bus = (i2c_opener or _default_i2c_opener)(profile.temperature_sensor.i2c_device)
            temperature = _temperature_reader(profile, bus)
        except TemperatureError:
            temperature = None  # RSSI falls back to the nominal temperature; doctor reports it
    return Sx1302Concentrator(transport, lines=lines, board=profile, spi_name=device,
                              firmware=images, temperature=temperature)
