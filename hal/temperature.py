"""The board's STTS751 temperature sensor (I2C), read for RSSI temperature compensation.

The reference boards carry an STTS751 at one of a few I2C addresses; it is found
by its product id (0 or 1) and manufacturer id (0x53), set to 12-bit resolution
and one conversion per second, then read as a signed 8.8 fixed-point value. The
bus is a small protocol so tests and the emulator plug in their own.
"""

from __future__ import annotations

import os
from typing import Protocol

from hal.errors import HalError

REG_TEMP_H = 0x00
REG_TEMP_L = 0x02
REG_CONF = 0x03
REG_RATE = 0x04
REG_PRODUCT_ID = 0xFD
REG_MANUFACTURER_ID = 0xFE
PRODUCT_IDS = (0x00, 0x01)
ST_MANUFACTURER_ID = 0x53
CONF_12_BITS = 0x8C
RATE_1_PER_S = 0x04
I2C_SLAVE = 0x0703  # ioctl: address the following read/write to this device


class TemperatureError(HalError):
    """No sensor answered, or a read failed."""


class I2cBus(Protocol):
    """Byte-register access to devices on one I2C bus."""

    def read_byte(self, address: int, register: int) -> int: ...

    def write_byte(self, address: int, register: int, value: int) -> None: ...

    def close(self) -> None: ...


class LinuxI2cBus:
    """``/dev/i2c-N`` through the kernel's i2c-dev interface (no extra library needed)."""

    def __init__(self, device: str) -> None:
        try:
            self._fd = os.open(device, os.O_RDWR)
        except OSError as exc:
            raise TemperatureError(f"cannot open {device}: {exc} — is I2C enabled?") from exc
        self.device = device

    def _select(self, address: int) -> None:
        import fcntl

        fcntl.ioctl(self._fd, I2C_SLAVE, address)

    def read_byte(self, address: int, register: int) -> int:
        try:
            self._select(address)
            os.write(self._fd, bytes((register,)))
            return os.read(self._fd, 1)[0]
        except (OSError, IndexError) as exc:
            raise TemperatureError(f"I2C read 0x{address:02X}/0x{register:02X} on "
                                   f"{self.device}: {exc}") from exc

    def write_byte(self, address: int, register: int, value: int) -> None:
        try:
            self._select(address)
            os.write(self._fd, bytes((register, value)))
        except OSError as exc:
            raise TemperatureError(f"I2C write 0x{address:02X}/0x{register:02X} on "
                                   f"{self.device}: {exc}") from exc

    def close(self) -> None:
        os.close(self._fd)


class Stts751:
    """One configured STTS751."""

    def __init__(self, bus: I2cBus, address: int) -> None:
        self.bus = bus
        self.address = address

    def read_celsius(self) -> float:
        low = self.bus.read_byte(self.address, REG_TEMP_L)
        high = self.bus.read_byte(self.address, REG_TEMP_H)
        signed_high = high - 256 if high >= 128 else high
        return (signed_high * 256 + low) / 256.0


def _is_stts751(bus: I2cBus, address: int) -> bool:
    try:
        return (bus.read_byte(address, REG_PRODUCT_ID) in PRODUCT_IDS
                and bus.read_byte(address, REG_MANUFACTURER_ID) == ST_MANUFACTURER_ID)
    except TemperatureError:
        return False


def find_stts751(bus: I2cBus, addresses: tuple[int, ...]) -> Stts751:
    """The first address answering as an STTS751, configured; raises if none does."""
    for address in addresses:
        if _is_stts751(bus, address):
            bus.write_byte(address, REG_CONF, CONF_12_BITS)
            bus.write_byte(address, REG_RATE, RATE_1_PER_S)
            return Stts751(bus, address)
    tried = ", ".join(f"0x{a:02X}" for a in addresses)
    raise TemperatureError(f"no STTS751 temperature sensor at {tried} — check I2C is enabled, "
                           "or set temperature_sensor = false in the board profile")
