"""The SX1261 beside the SX1302: listen-before-talk and spectral scan.

CoreCell-type boards carry an SX1261 on its own SPI chip-select (``/dev/spidev0.1``
on the reference design; its frames are an opcode and its parameters, no mux
byte: libloragw/src/sx1261_spi.c). It runs a firmware patch (PRAM, loaded at
every start, :mod:`hal.firmware`) that adds two commands the stock chip lacks:

- LBT (opcode 0x9A): sample the RSSI every ~8.2 µs, ``nb_scan`` times per
  window, and drive a GPIO high while the channel is above a threshold; that
  GPIO is the SX1302's GPIO 7, which the AGC firmware checks before it starts a
  transmission (``sx1261_lbt_start``, loragw_sx1261.c);
- spectral scan (opcode 0x9B): ``nb_scan`` samples into a 33-bin histogram read
  at register 0x0401 (``sx1261_spectral_scan_*``, loragw_sx1261.c).

This module only speaks to the chip; the LBT decision around a send lives in
:mod:`hal.lbt`, the noise-floor arithmetic in :mod:`hal.spectral`.
"""

from __future__ import annotations

from collections.abc import Callable

from hal.errors import HalError
from hal.interface import SpiTransport
from hal.sx1250 import IMAGE_BANDS, freq_to_reg

SET_STANDBY = 0x80
SET_FS = 0xC1
SET_RX = 0x82
SET_RF_FREQUENCY = 0x86
SET_PACKET_TYPE = 0x8A
CALIBRATE_IMAGE = 0x98
WRITE_REGISTER = 0x0D
READ_REGISTER = 0x1D
GET_STATUS = 0xC0
GET_DEVICE_ERRORS = 0x17
PATCH_UPDATE = 0xD9
LBT_START = 0x9A
SPECTRAL_SCAN_START = 0x9B

STANDBY_RC = 0x00
PACKET_TYPE_LORA = 0x01
RX_CONTINUOUS = b"\xff\xff\xff"
STATUS_MODE_MASK = 0x70
STATUS_MODE_STBY_RC = 0x20
PATCH_BASE = 0x8000
PATCH_UPDATE_REGISTER = 0x0610
PATCH_UPDATE_ON = 0x10
VERSION_REGISTER = 0x0320
VERSION_LENGTH = 16
PATCH_VERSION = "2D06"
"""The release string the reference checks at offset 11 of the version (loragw_sx1261.h)."""
SCAN_CONTROL_REGISTER = 0x089B
SCAN_STATUS_REGISTER = 0x07CD
SCAN_RESULTS_REGISTER = 0x0401
SCAN_BINS = 33
RSSI_INTERVAL_CODE = 11
"""Sampling interval code 11 ≈ 8.2 µs between RSSI reads (the reference's choice)."""
LBT_GPIO = 1

LBT_SCANS: dict[int, int] = {128: 24, 5000: 715}
"""Scan time (µs) → RSSI samples per window, the two the reference supports
(``sx1261_lbt_start``): 24 for 128 µs (ETSI short), 715 for 5 ms (KR920, ARIB)."""

SCAN_STATUS = {0x00: "none", 0x0F: "on_going", 0xF0: "aborted", 0xFF: "completed"}

Sleep = Callable[[float], None]


class Sx1261Error(HalError):
    """The SX1261 did not answer as expected (status, patch version, scan)."""


class Sx1261:
    """Commands of the patched SX1261 over its own SPI transport."""

    def __init__(self, spi: SpiTransport, sleep: Sleep) -> None:
        self._spi = spi
        self._sleep = sleep

    # -- frames -------------------------------------------------------------------------------
    def command(self, opcode: int, params: bytes = b"") -> bytes:
        """One opcode with its parameters; returns the bytes clocked in after the opcode."""
        return self._spi.transfer(bytes((opcode,)) + params)[1:]

    def write_register(self, address: int, data: bytes) -> None:
        self.command(WRITE_REGISTER, address.to_bytes(2, "big") + data)

    def read_register(self, address: int, count: int) -> bytes:
        """``count`` bytes from ``address`` (address, then a status byte, then the data)."""
        answer = self.command(READ_REGISTER, address.to_bytes(2, "big") + bytes(1 + count))
        return answer[3:]

    def status(self) -> int:
        return self.command(GET_STATUS, b"\x00")[0]

    # -- bring-up -----------------------------------------------------------------------------
    def version(self) -> str:
        raw = self.read_register(VERSION_REGISTER, VERSION_LENGTH - 1)
        return raw.split(b"\0", 1)[0].decode("ascii", "replace")

    def load_patch(self, words: bytes) -> str:
        """Write the PRAM patch (big-endian 32-bit words) and check the version it reports."""
        if not words or len(words) % 4:
            raise Sx1261Error(f"SX1261 patch of {len(words)} bytes is not whole 32-bit words")
        self.command(SET_STANDBY, bytes((STANDBY_RC,)))
        if self.status() & STATUS_MODE_MASK != STATUS_MODE_STBY_RC:
            raise Sx1261Error("SX1261 not in standby after reset — check its reset line and "
                              "chip-select")
        self.write_register(PATCH_UPDATE_REGISTER, bytes((PATCH_UPDATE_ON,)))
        for i in range(0, len(words), 4):
            self.write_register(PATCH_BASE + i, words[i:i + 4])
        self.write_register(PATCH_UPDATE_REGISTER, b"\x00")
        self.command(PATCH_UPDATE)
        version = self.version()
        if version[11:15] != PATCH_VERSION:
            raise Sx1261Error(f"SX1261 patch reports version {version!r}, expected …"
                              f"{PATCH_VERSION} — wrong or corrupted sx1261 image")
        return version

    def calibrate_image(self, freq_hz: int) -> None:
        for low, high, band in IMAGE_BANDS:
            if low <= freq_hz <= high:
                self.command(CALIBRATE_IMAGE, band)
                break
        else:
            raise Sx1261Error(f"no SX1261 image calibration band for {freq_hz} Hz")
        errors = self.command(GET_DEVICE_ERRORS, bytes(3))
        if len(errors) >= 3 and errors[2] & 0x10:
            raise Sx1261Error(f"SX1261 image calibration failed at {freq_hz} Hz")

    # -- listening ----------------------------------------------------------------------------
    def set_rx(self, freq_hz: int) -> None:
        """Tune and listen continuously at ``freq_hz`` (the LBT and scan commands sample RSSI)."""
        self.command(SET_FS)
        self.command(SET_RF_FREQUENCY, freq_to_reg(freq_hz).to_bytes(4, "big"))
        self.command(SET_PACKET_TYPE, bytes((PACKET_TYPE_LORA,)))
        self.command(SET_RX, RX_CONTINUOUS)

    def lbt_start(self, scan_time_us: int, threshold_dbm: int) -> None:
        """Arm LBT: the busy GPIO follows the channel from now on; waits one scan window."""
        nb_scan = LBT_SCANS.get(scan_time_us)
        if nb_scan is None:
            raise Sx1261Error(f"LBT scan time {scan_time_us} µs (the SX1261 patch supports "
                              f"{', '.join(map(str, LBT_SCANS))})")
        if not -127 <= threshold_dbm <= 0:
            raise Sx1261Error(f"LBT threshold {threshold_dbm} dBm (−127..0)")
        self.command(LBT_START, bytes((RSSI_INTERVAL_CODE, nb_scan >> 8, nb_scan & 0xFF,
                                       (-2 * threshold_dbm) & 0xFF, LBT_GPIO)))
        self._sleep(scan_time_us / 1e6)

    def scan_stop(self) -> None:
        """End LBT (or abort a spectral scan) and leave the radio in FS."""
        self.write_register(SCAN_CONTROL_REGISTER, b"\x00")
        self.command(SET_FS)

    def spectral_scan_start(self, nb_scan: int) -> None:
        if not 1 <= nb_scan <= 0xFFFF:
            raise Sx1261Error(f"spectral scan of {nb_scan} samples (1-65535)")
        self.command(SPECTRAL_SCAN_START,
                     bytes((nb_scan >> 8, nb_scan & 0xFF, RSSI_INTERVAL_CODE)) + bytes(6))

    def spectral_scan_status(self) -> str:
        return SCAN_STATUS.get(self.read_register(SCAN_STATUS_REGISTER, 1)[0], "unknown")

    def spectral_scan_counts(self) -> tuple[int, ...]:
        """33 counts: samples above 0, −4, …, −124 dBm (cumulative), then those below −124."""
        raw = self.read_register(SCAN_RESULTS_REGISTER, 2 * SCAN_BINS)
        return tuple(int.from_bytes(raw[2 * i:2 * i + 2], "big") for i in range(SCAN_BINS))
