"""The ``sx1302`` backend: an SX1302 on a Pi's SPI bus, its GPIO lines and I2C sensor.

The emulator builds the same :class:`Sx1302Concentrator` (``hal.backends.emulated``);
only the SPI transport, the GPIO lines and the I2C bus differ. Hardware libraries are
imported inside the functions that need them, so CI never imports spidev or gpiod.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path

from hal.backends import Purpose, Radio, RadioSettings
from hal.backends._bundle import sx1302_radio
from hal.board_power import LineOpener, open_board_lines
from hal.firmware import DEFAULT_FIRMWARE_DIR, KNOWN_SHA256, load_firmware, load_sx1261_patch
from hal.interface import SpiTransport
from hal.lbt import LbtSettings, ListenBeforeTalk
from hal.sx1261 import Sx1261
from hal.sx1302 import Sx1302Concentrator
from hal.temperature import I2cBus, TemperatureError, find_stts751
from hardware.board import BoardProfile, get_board

I2cOpener = Callable[[str], I2cBus]


def temperature_reader(board: BoardProfile, bus: I2cBus) -> Callable[[], float]:
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
                load_images: bool = True,
                lbt: LbtSettings | None = None) -> Sx1302Concentrator:
    """The driver on a real SPI device with the board's GPIO lines, sensor and firmware.

    ``spi_device`` None takes the board profile's. The firmware is checked before
    any hardware is opened, so a missing file is reported first and alone.
    ``load_images`` False skips it (for ``doctor``/``provision``, which never start RX).
    ``lbt`` needs a board with an SX1261 and its patch among the firmware files.
    """
    from hal.gpio import open_output_line

    profile = get_board(board)
    folder = firmware_dir or DEFAULT_FIRMWARE_DIR
    images = load_firmware(folder, firmware_sha256) if load_images else None
    if lbt is not None and profile.lbt_radio is None:
        raise ValueError(f"board {profile.name!r} has no SX1261 for listen-before-talk")
    patch = load_sx1261_patch(folder, firmware_sha256) if lbt is not None else None
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
            temperature = temperature_reader(profile, bus)
        except TemperatureError:
            temperature = None  # RSSI falls back to the nominal temperature; doctor reports it
    listen = None
    if lbt is not None and profile.lbt_radio is not None:
        listen = ListenBeforeTalk(Sx1261(spi_opener(profile.lbt_radio.spi_device), time.sleep),
                                  lbt, time.sleep)
    return Sx1302Concentrator(transport, lines=lines, board=profile, spi_name=device,
                              firmware=images, temperature=temperature, lbt=listen,
                              sx1261_patch=patch)


def open_sx1261(board: str, *, firmware_dir: Path | None = None,
                firmware_sha256: Mapping[str, frozenset[str]] = KNOWN_SHA256,
                spi_opener: Callable[[str], SpiTransport] = _open_spidev) -> Sx1261:
    """The board's SX1261 alone, patched, for a spectral scan (``survey``, ``doctor``).

    The SX1302 must have been powered and reset first (its start does that): the
    SX1261 shares the board's reset sequence.
    """
    profile = get_board(board)
    if profile.lbt_radio is None:
        raise ValueError(f"board {profile.name!r} has no SX1261")
    patch = load_sx1261_patch(firmware_dir or DEFAULT_FIRMWARE_DIR, firmware_sha256)
    radio = Sx1261(spi_opener(profile.lbt_radio.spi_device), time.sleep)
    radio.load_patch(patch)
    return radio


def open_radio(settings: RadioSettings, purpose: Purpose) -> Radio:
    """The registry's opener: firmware is checked (``run`` only) before any device opens."""
    run = purpose == "run"
    driver = open_sx1302(settings.spi_device, settings.board, firmware_dir=settings.firmware_dir,
                         load_images=run, lbt=settings.lbt if run else None)

    def open_scanner() -> Sx1261:
        driver.probe()  # power and reset the board: the SX1261 shares the sequence
        return open_sx1261(settings.board, firmware_dir=settings.firmware_dir)

    return sx1302_radio(driver, open_scanner=open_scanner)
