"""An emulated SX1261 (with Semtech's LBT/spectral-scan patch) behind its own SPI transport.

The air it hears is a configurable noise floor plus "busy" frequencies with a
signal level (an installer's neighbour, a test's jammer). It answers the same
opcode frames as the chip (:mod:`hal.sx1261`): patch upload and version, tuning,
the LBT command (whose busy line the emulated SX1302's AGC reads before a TX)
and the spectral scan, which completes at once with a histogram built from
deterministic samples around the level at the tuned frequency.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from hal import sx1261 as op
from hal.sx1250 import FREQ_SHIFT, XTAL_HZ

UNPATCHED_VERSION = b"SX1261 V1B 0000"
PATCHED_VERSION = b"SX1261 V1B " + op.PATCH_VERSION.encode()
SIGNAL_HALF_WIDTH_HZ = 62_500
"""A busy frequency raises the level within ±62.5 kHz of it (a 125 kHz channel)."""
SAMPLE_SPREAD_DB = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 0.5, -0.5, 1.5, -1.5)
MODE_STBY_RC, MODE_FS, MODE_RX = 0x20, 0x40, 0x50
STATUS_READY = 0x04


@dataclass(frozen=True, slots=True)
class LbtScanLog:
    """One LBT arm, as the chip received it."""

    frequency_hz: int
    nb_scan: int
    threshold_dbm: float
    at_s: float
    """The emulator clock when the command arrived."""


class Sx1261Emulator:
    """``transfer``/``close`` like an SPI transport; air and patch are plain attributes."""

    def __init__(self, *, noise_floor_dbm: float = -110.0,
                 busy: Mapping[int, float] | None = None,
                 expected_patch: bytes | None = None, require_patch: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.noise_floor_dbm = noise_floor_dbm
        self.busy: dict[int, float] = dict(busy or {})
        """Frequency (Hz) → signal level (dBm) heard there."""
        self.expected_patch = expected_patch
        self.require_patch = require_patch
        self._clock = clock
        self._lock = threading.RLock()
        self.mode = MODE_STBY_RC
        self.frequency_hz: int | None = None
        self.patched = False
        self._patch_update = False
        self._patch = bytearray()
        self.lbt_armed = False
        self.lbt_log: list[LbtScanLog] = []
        self._threshold_dbm = 0.0
        self._scan_status = 0x00
        self._scan_counts = bytes(2 * op.SCAN_BINS)
        self.scans: list[tuple[int, int]] = []
        """(frequency Hz, samples) of every spectral scan run."""

    # -- the air -----------------------------------------------------------------------------
    def level_dbm(self, frequency_hz: int) -> float:
        """What the SX1261 measures at ``frequency_hz``: the loudest signal there, or the floor."""
        heard = [level for f, level in self.busy.items()
                 if abs(f - frequency_hz) <= SIGNAL_HALF_WIDTH_HZ]
        return max([self.noise_floor_dbm, *heard])

    def busy_line(self) -> bool:
        """The LBT GPIO (SX1302 GPIO 7): high while armed and the channel is above threshold."""
        with self._lock:
            return (self.lbt_armed and self.frequency_hz is not None
                    and self.level_dbm(self.frequency_hz) > self._threshold_dbm)

    # -- SPI ---------------------------------------------------------------------------------
    def transfer(self, data: bytes) -> bytes:
        with self._lock:
            reply = bytearray(len(data))
            if not data:
                return b""
            opcode, params = data[0], bytes(data[1:])
            if opcode == op.READ_REGISTER and len(params) >= 3:
                address = int.from_bytes(params[:2], "big")
                values = self._read(address, len(params) - 3)
                reply[4:4 + len(values)] = values
            elif opcode == op.GET_STATUS:
                reply[1:] = bytes((self.mode | STATUS_READY,)) * (len(data) - 1)
            elif opcode == op.GET_DEVICE_ERRORS:
                pass  # no errors
            else:
                self._command(opcode, params)
            return bytes(reply)

    def close(self) -> None:
        """Nothing to release."""

    def _read(self, address: int, count: int) -> bytes:
        if address == op.VERSION_REGISTER:
            text = PATCHED_VERSION if self.patched else UNPATCHED_VERSION
            return text.ljust(count, b"\0")[:count]
        if address == op.SCAN_STATUS_REGISTER:
            return bytes((self._scan_status,)) + bytes(count - 1)
        if address == op.SCAN_RESULTS_REGISTER:
            return self._scan_counts.ljust(count, b"\0")[:count]
        return bytes(count)

    def _command(self, opcode: int, params: bytes) -> None:
        if opcode == op.SET_STANDBY:
            self.mode = MODE_STBY_RC
        elif opcode == op.SET_FS:
            self.mode = MODE_FS
        elif opcode == op.SET_RX:
            self.mode = MODE_RX
        elif opcode == op.SET_RF_FREQUENCY and len(params) >= 4:
            reg = int.from_bytes(params[:4], "big")
            self.frequency_hz = round(reg * XTAL_HZ / (1 << FREQ_SHIFT))
        elif opcode == op.WRITE_REGISTER and len(params) >= 3:
            self._write(int.from_bytes(params[:2], "big"), params[2:])
        elif opcode == op.PATCH_UPDATE:
            image = bytes(self._patch)
            expected = self.expected_patch
            self.patched = bool(image) and (expected is None or image == expected)
        elif opcode == op.LBT_START and len(params) >= 5 and self._patch_ok():
            nb_scan = (params[1] << 8) | params[2]
            self._threshold_dbm = -params[3] / 2
            self.lbt_armed = self.frequency_hz is not None
            self.lbt_log.append(LbtScanLog(self.frequency_hz or 0, nb_scan, self._threshold_dbm,
                                           self._clock()))
        elif opcode == op.SPECTRAL_SCAN_START and len(params) >= 2 and self._patch_ok():
            self._spectral_scan((params[0] << 8) | params[1])

    def _write(self, address: int, data: bytes) -> None:
        if address == op.PATCH_UPDATE_REGISTER:
            self._patch_update = bool(data[0] & op.PATCH_UPDATE_ON)
            if self._patch_update:
                self._patch = bytearray()
        elif address >= op.PATCH_BASE and self._patch_update:
            offset = address - op.PATCH_BASE
            if len(self._patch) < offset + len(data):
                self._patch.extend(bytes(offset + len(data) - len(self._patch)))
            self._patch[offset:offset + len(data)] = data
        elif address == op.SCAN_CONTROL_REGISTER and not data[0]:
            self.lbt_armed = False
            if self._scan_status == 0x0F:
                self._scan_status = 0xF0

    def _patch_ok(self) -> bool:
        return self.patched or not self.require_patch

    def _spectral_scan(self, nb_scan: int) -> None:
        freq = self.frequency_hz or 0
        level = self.level_dbm(freq)
        samples = [level + SAMPLE_SPREAD_DB[i % len(SAMPLE_SPREAD_DB)] for i in range(nb_scan)]
        counts = [sum(1 for s in samples if s > -4 * i) for i in range(op.SCAN_BINS - 1)]
        counts.append(sum(1 for s in samples if s <= -4 * (op.SCAN_BINS - 2)))
        self._scan_counts = b"".join(min(c, 0xFFFF).to_bytes(2, "big") for c in counts)
        self._scan_status = 0xFF
        self.scans.append((freq, nb_scan))
