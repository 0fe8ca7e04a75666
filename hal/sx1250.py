"""SX1250 radio commands, sent through the SX1302's SPI mux.

The SX1250s are the RF front ends; in receive mode they also clock the SX1302,
so each one is put in continuous RX on its centre frequency during bring-up.
"""

from __future__ import annotations

from collections.abc import Callable

from hal.errors import HalError
from hal.spi import Sx1302Spi

SET_STANDBY = 0x80
GET_STATUS = 0xC0
CALIBRATE = 0x89
CALIBRATE_IMAGE = 0x98
WRITE_REGISTER = 0x0D
SET_RF_FREQUENCY = 0x86
SET_RX = 0x82
GET_DEVICE_ERRORS = 0x17

STANDBY_RC = 0x00
STANDBY_XOSC = 0x01
MODE_STANDBY_RC = 0x2
MODE_STANDBY_XOSC = 0x3
MODE_RX = 0x5
CALIBRATE_ALL = 0x7F
RX_CONTINUOUS = b"\xff\xff\xff"
IMAGE_CAL_ERROR_BIT = 4

XTAL_HZ = 32_000_000
FREQ_SHIFT = 25

# (low Hz, high Hz) → the two CalibrateImage bytes for that band.
IMAGE_BANDS: tuple[tuple[int, int, bytes], ...] = (
    (430_000_000, 440_000_000, b"\x6b\x6f"),
    (470_000_000, 510_000_000, b"\x75\x81"),
    (779_000_000, 787_000_000, b"\xc1\xc5"),
    (863_000_000, 870_000_000, b"\xd7\xdb"),
    (902_000_000, 928_000_000, b"\xe1\xe9"),
)

# Register writes of the reference bring-up: (address, value) pairs.
_SETUP_REGISTERS_BEFORE_FREQ: tuple[tuple[int, int], ...] = (
    (0x06A1, 0x01), (0x06A2, 0x00), (0x06A3, 0x00),  # highest bit rate: faster TX/FS switch
    (0x0582, 0x00), (0x0583, 0x00), (0x0584, 0x00), (0x0585, 0x00), (0x0580, 0x00),  # DIOs
    (0x08B6, 0x2A),  # fixed gain
)
_FPGA_MODE_RX = (0x0587, 0x0B)
_FREQ_OFFSET_REGISTER = 0x088F


class RadioSetupError(HalError):
    """An SX1250 did not reach the expected mode or reported a calibration error."""


def freq_to_reg(freq_hz: int) -> int:
    """SetRfFreq argument: f·2^25/32 MHz, truncated."""
    return freq_hz * (1 << FREQ_SHIFT) // XTAL_HZ


def reg_to_freq(reg: int) -> float:
    return reg * XTAL_HZ / (1 << FREQ_SHIFT)


def image_band(freq_hz: int) -> bytes:
    for low, high, code in IMAGE_BANDS:
        if low < freq_hz < high:
            return code
    raise RadioSetupError(f"no SX1250 image calibration band for {freq_hz} Hz")


def chip_mode(status: int) -> int:
    """Chip mode bits 6:4 of the SX1250 status byte."""
    return (status >> 4) & 0x07


class Sx1250:
    """One radio (``rf_chain`` 0 = A, 1 = B) behind the SX1302 mux."""

    def __init__(self, spi: Sx1302Spi, rf_chain: int, sleep: Callable[[float], None]) -> None:
        self.spi = spi
        self.rf_chain = rf_chain
        self._sleep = sleep

    def command(self, opcode: int, params: bytes = b"") -> bytes:
        return self.spi.radio_command(self.rf_chain, opcode, params)

    def status(self) -> int:
        return self.command(GET_STATUS, b"\x00")[0]

    def write_register(self, address: int, data: bytes) -> None:
        self.command(WRITE_REGISTER, address.to_bytes(2, "big") + data)

    def _expect_mode(self, mode: int, step: str) -> None:
        status = self.status()
        if chip_mode(status) != mode:
            raise RadioSetupError(
                f"radio {'AB'[self.rf_chain]}: {step}: status 0x{status:02X}, expected mode {mode}"
                " — is the radio powered and out of reset?")

    def calibrate_image(self, freq_hz: int) -> None:
        """Image rejection calibration for the band containing ``freq_hz``."""
        self.status()
        self.command(CALIBRATE_IMAGE, image_band(freq_hz))
        self._sleep(0.010)
        errors = self.command(GET_DEVICE_ERRORS, bytes(3))
        if errors[2] & (1 << IMAGE_CAL_ERROR_BIT):
            raise RadioSetupError(f"radio {'AB'[self.rf_chain]}: image calibration failed")

    def setup_rx(self, freq_hz: int) -> None:
        """Standby, calibrate, XOSC on, tune to ``freq_hz``, then continuous RX."""
        self.command(SET_STANDBY, bytes((STANDBY_RC,)))
        self._sleep(0.010)
        self._expect_mode(MODE_STANDBY_RC, "standby RC")
        self.command(CALIBRATE, bytes((CALIBRATE_ALL,)))
        self._sleep(0.010)
        self.command(SET_STANDBY, bytes((STANDBY_XOSC,)))
        self._sleep(0.010)
        self._expect_mode(MODE_STANDBY_XOSC, "standby XOSC")
        for address, value in _SETUP_REGISTERS_BEFORE_FREQ:
            self.write_register(address, bytes((value,)))
        self.command(SET_RF_FREQUENCY, freq_to_reg(freq_hz).to_bytes(4, "big"))
        self.write_register(_FREQ_OFFSET_REGISTER, bytes(3))
        self.command(SET_RX, RX_CONTINUOUS)
        self.write_register(_FPGA_MODE_RX[0], bytes((_FPGA_MODE_RX[1],)))
