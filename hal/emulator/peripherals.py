"""Emulated board peripherals: the STTS751 temperature sensor on an I2C bus."""

from __future__ import annotations

from hal.temperature import (
    REG_CONF,
    REG_MANUFACTURER_ID,
    REG_PRODUCT_ID,
    REG_RATE,
    REG_TEMP_H,
    REG_TEMP_L,
    ST_MANUFACTURER_ID,
    TemperatureError,
)


class Stts751Emulator:
    """An :class:`hal.temperature.I2cBus` with one STTS751 at ``address``."""

    def __init__(self, address: int = 0x39, celsius: float = 25.0) -> None:
        self.address = address
        self.celsius = celsius
        self.registers: dict[int, int] = {REG_PRODUCT_ID: 0x00,
                                          REG_MANUFACTURER_ID: ST_MANUFACTURER_ID}
        self.absent = False
        """Fault mode: nothing answers on the bus."""

    def read_byte(self, address: int, register: int) -> int:
        if self.absent or address != self.address:
            raise TemperatureError(f"no ACK from 0x{address:02X}")
        raw = round(self.celsius * 256) & 0xFFFF
        if register == REG_TEMP_H:
            return raw >> 8
        if register == REG_TEMP_L:
            return raw & 0xF0  # 12-bit resolution: the low nibble reads 0
        return self.registers.get(register, 0)

    def write_byte(self, address: int, register: int, value: int) -> None:
        if self.absent or address != self.address:
            raise TemperatureError(f"no ACK from 0x{address:02X}")
        if register in (REG_CONF, REG_RATE):
            self.registers[register] = value

    def close(self) -> None:
        """Nothing to release."""
