"""An emulated GPS receiver: a serial port that speaks NMEA and UBX, and drives the chip's PPS.

Each :meth:`GpsEmulator.second` is one PPS edge: the emulated SX1302 latches its
counter, then the receiver sends RMC, GGA and NAV-TIMEGPS for that second, as a
u-blox module does. Fault modes: no fix, and a corrupted byte in the next frame.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hal.emulator.chip import TICK_HZ, Sx1302Emulator
from hal.gps import (
    SECONDS_PER_WEEK,
    UBX_NAV,
    UBX_NAV_TIMEGPS,
    nmea_checksum,
    ubx_frame,
)
from hal.gps_time import GPS_EPOCH_UNIX_S

LEAP_SECONDS = 18  # GPS − UTC since 2017


def _nmea(body: str) -> bytes:
    return f"${body}*{nmea_checksum(body)}\r\n".encode("ascii")


class GpsEmulator:
    """A serial port object (``read``/``write``/``close``) wired to ``chip``'s PPS input."""

    def __init__(self, chip: Sx1302Emulator, *, gps_seconds: int = 1_400_000_000) -> None:
        self.chip = chip
        self.gps_seconds = gps_seconds
        self.fix = True
        self.written = bytearray()
        self._out = bytearray()
        self._corrupt_next = False

    def corrupt_next_frame(self) -> None:
        self._corrupt_next = True

    def second(self, at_ticks: int | None = None) -> None:
        """Advance to the next whole GPS second: PPS edge, then that second's messages."""
        self.gps_seconds += 1
        if self.fix:
            self.chip.pps(at_ticks)
        utc = datetime.fromtimestamp(GPS_EPOCH_UNIX_S + self.gps_seconds, UTC) - timedelta(
            seconds=LEAP_SECONDS)
        hhmmss, ddmmyy = utc.strftime("%H%M%S.00"), utc.strftime("%d%m%y")
        status, quality = ("A", 1) if self.fix else ("V", 0)
        frames = [
            _nmea(f"GPRMC,{hhmmss},{status},4807.038,N,01131.000,E,0.0,0.0,{ddmmyy},,,A"),
            _nmea(f"GPGGA,{hhmmss},4807.038,N,01131.000,E,{quality},08,0.9,545.4,M,46.9,M,,"),
            self._nav_timegps(),
        ]
        if self._corrupt_next:
            self._corrupt_next = False
            frames[-1] = frames[-1][:-3] + bytes((frames[-1][-3] ^ 0xFF,)) + frames[-1][-2:]
        for frame in frames:
            self._out += frame

    def _nav_timegps(self) -> bytes:
        week, tow = divmod(self.gps_seconds, SECONDS_PER_WEEK)
        valid = 0x07 if self.fix else 0x00
        payload = ((tow * 1000).to_bytes(4, "little") + (0).to_bytes(4, "little", signed=True)
                   + week.to_bytes(2, "little") + bytes((LEAP_SECONDS, valid))
                   + (50).to_bytes(4, "little"))
        return ubx_frame(UBX_NAV, UBX_NAV_TIMEGPS, payload)

    def read(self, size: int = 1) -> bytes:
        out = bytes(self._out[:size])
        del self._out[:size]
        return out

    def write(self, data: bytes) -> int:
        self.written += data
        return len(data)

    def close(self) -> None:
        """Nothing to release."""


class FreeRunningGps(GpsEmulator):
    """A receiver whose seconds pass with the emulated chip's own clock, PPS edges included.

    Reading it first emits every whole second that has elapsed on the chip since the
    last one, each PPS edge exactly 32 M ticks after the previous one, as a real
    receiver's would be, however irregularly the port is read.
    """

    def __init__(self, chip: Sx1302Emulator, *, gps_seconds: int = 1_400_000_000) -> None:
        super().__init__(chip, gps_seconds=gps_seconds)
        self._next_edge = chip.ticks() + TICK_HZ

    def read(self, size: int = 1) -> bytes:
        now = self.chip.ticks()
        while now >= self._next_edge:
            self.second(at_ticks=self._next_edge)
            self._next_edge += TICK_HZ
        return super().read(size)
