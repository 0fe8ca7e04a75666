"""GPS time ↔ concentrator counter, from PPS-latched counter values paired with GPS time.

Every valid NAV-TIMEGPS names the GPS time of the last PPS edge; the SX1302
latched its counter on that edge. Each (counter, GPS time) pair is a reference
point; the slope between successive points is the crystal error, accepted only
within 1 ± 10 ppm. One or two aberrant points in a row are ignored; a third
resets the reference (keeping the crystal error if it is still in range), as the
reference packet forwarder does. A reference older than 30 s is not used.

Counter differences are taken as signed 32-bit values, so a counter value
slightly before the reference converts correctly (the reference driver treats
it as ~71 minutes later).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from hal.errors import HalError
from hal.gps import Gga, GpsMessage, GpsStreamParser, NavTimeGps, Rmc, enable_nav_timegps
from hal.types import COUNTER_MODULO

log = structlog.get_logger(__name__)

XTAL_TOLERANCE = 10e-6
REFERENCE_MAX_AGE_S = 30.0
GPS_EPOCH_UNIX_S = 315_964_800
"""1980-01-06T00:00:00Z as a Unix time; GPS time counts no leap seconds."""
ABERRANT_RESET_COUNT = 3
HALF_PERIOD_US = COUNTER_MODULO // 2
"""Counter times farther than this from the reference are ambiguous (wrap aliasing)."""
READ_CHUNK = 512


def signed_count_delta(count_us: int, reference_us: int) -> int:
    """``count_us - reference_us`` on the 32-bit counter, in [-2^31, 2^31)."""
    delta = (count_us - reference_us) % COUNTER_MODULO
    return delta - COUNTER_MODULO if delta >= COUNTER_MODULO // 2 else delta


class TimeReferenceError(HalError):
    """No usable GPS time reference (never synced, too old, or crystal error out of range)."""


class GpsTimeRangeError(HalError, ValueError):
    """A GPS time the 32-bit counter cannot name unambiguously from the current reference.

    The counter wraps every ~71.6 min, so only times within half a period of the
    reference map to one counter value; a time before the GPS epoch names nothing.
    Converting such a time modulo 2^32 would alias it onto an unrelated moment.
    """


@dataclass(frozen=True, slots=True)
class TimeReference:
    count_us: int
    gps_ns: int
    xtal_err: float
    """Counter µs per true µs (1.0 = perfect crystal)."""
    host_time: float
    utc_unix_ns: int | None = None


class GpsClock:
    """The filtered time reference and the conversions built on it."""

    def __init__(self, host_clock: Callable[[], float] = time.monotonic) -> None:
        self._host_clock = host_clock
        self.reference: TimeReference | None = None
        self._aberrant_run = 0

    def sync(self, count_us: int, gps_ns: int, utc_unix_ns: int | None = None) -> bool:
        """Offer a new (PPS counter, GPS time) pair; True when it became the reference."""
        now = self._host_clock()
        ref = self.reference
        if ref is None:
            self.reference = TimeReference(count_us, gps_ns, 1.0, now, utc_unix_ns)
            return True
        gps_diff_us = (gps_ns - ref.gps_ns) / 1000
        slope = signed_count_delta(count_us, ref.count_us) / gps_diff_us if gps_diff_us else 0.0
        if abs(slope - 1.0) <= XTAL_TOLERANCE:
            self.reference = TimeReference(count_us, gps_ns, slope, now, utc_unix_ns)
            self._aberrant_run = 0
            return True
        self._aberrant_run += 1
        log.warning("gps_sync_aberrant", slope=slope, run=self._aberrant_run)
        if self._aberrant_run >= ABERRANT_RESET_COUNT:
            xtal = ref.xtal_err if abs(ref.xtal_err - 1.0) <= XTAL_TOLERANCE else 1.0
            self.reference = TimeReference(count_us, gps_ns, xtal, now, utc_unix_ns)
            self._aberrant_run = 0
            return True
        return False

    def _valid_reference(self) -> TimeReference:
        ref = self.reference
        if ref is None:
            raise TimeReferenceError("no GPS time reference yet")
        if self._host_clock() - ref.host_time > REFERENCE_MAX_AGE_S:
            raise TimeReferenceError(f"GPS time reference older than {REFERENCE_MAX_AGE_S:g} s")
        return ref

    @property
    def valid(self) -> bool:
        try:
            self._valid_reference()
        except TimeReferenceError:
            return False
        return True

    def count_to_gps_ns(self, count_us: int) -> int:
        """GPS time (ns since the GPS epoch) of a counter value."""
        ref = self._valid_reference()
        delta_us = signed_count_delta(count_us, ref.count_us) / ref.xtal_err
        return ref.gps_ns + round(delta_us * 1000)

    def gps_ns_to_count(self, gps_ns: int) -> int:
        """The 32-bit counter value at a GPS time (for class B beacons and ping slots).

        Raises :class:`GpsTimeRangeError` for a time before the GPS epoch or half a
        counter period (~35.8 min) or more away from the reference: never aliased.
        """
        ref = self._valid_reference()
        if gps_ns < 0:
            raise GpsTimeRangeError(f"GPS time {gps_ns} ns is before the GPS epoch")
        delta_us = round((gps_ns - ref.gps_ns) / 1000 * ref.xtal_err)
        if not -HALF_PERIOD_US <= delta_us < HALF_PERIOD_US:
            raise GpsTimeRangeError(f"GPS time {delta_us / 1e6:+.0f} s from the reference is "
                                    "beyond what the 32-bit counter can name")
        return (ref.count_us + delta_us) % COUNTER_MODULO

    def time_since_gps_epoch_s(self, count_us: int) -> float:
        """What ChirpStack's ``time_since_gps_epoch`` wants for a frame stamped ``count_us``."""
        return self.count_to_gps_ns(count_us) / 1e9


class SerialPort(Protocol):
    """The part of ``serial.Serial`` the reader uses (opened with ``timeout=0``)."""

    def read(self, size: int = 1) -> bytes: ...

    def write(self, data: bytes) -> int | None: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class GpsStatus:
    rmc: Rmc | None = None
    gga: Gga | None = None
    nav: NavTimeGps | None = None
    syncs: int = 0

    @property
    def has_fix(self) -> bool:
        return (self.rmc is not None and self.rmc.valid) or (
            self.gga is not None and self.gga.fix_quality > 0)


class GpsReader:
    """Reads the receiver without blocking and pairs each NAV-TIMEGPS with the PPS counter."""

    def __init__(self, port: SerialPort, pps_counter_us: Callable[[], int], clock: GpsClock,
                 parser: GpsStreamParser | None = None) -> None:
        self._port = port
        self._pps_counter_us = pps_counter_us
        self.clock = clock
        self.parser = parser if parser is not None else GpsStreamParser()
        self.status = GpsStatus()
        port.write(enable_nav_timegps())

    def poll(self) -> list[GpsMessage]:
        """Handle whatever arrived since the last call (call a few times per second)."""
        messages = self.parser.feed(self._port.read(READ_CHUNK))
        for message in messages:
            if isinstance(message, Rmc):
                self.status.rmc = message
            elif isinstance(message, Gga):
                self.status.gga = message
            else:
                self.status.nav = message
                if message.valid and self.clock.sync(self._pps_counter_us(), message.gps_ns,
                                                     self._utc_ns()):
                    self.status.syncs += 1
        return messages

    def _utc_ns(self) -> int | None:
        rmc = self.status.rmc
        if rmc is None or rmc.utc is None or not rmc.valid:
            return None
        return round(rmc.utc.timestamp() * 1e9)

    def close(self) -> None:
        self._port.close()


def open_gps_port(uart: str, baudrate: int) -> SerialPort:
    """The receiver's UART through pyserial, non-blocking."""
    import serial

    port: SerialPort = serial.Serial(uart, baudrate, timeout=0)
    return port
