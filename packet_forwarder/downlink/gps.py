"""The link between GPS time and the concentrator counter that class B timing needs.

The daemon owns the GPS receiver; the downlink path only asks two questions of
it through :class:`GpsClock`, and ``None`` means "no lock": the request is
answered GPS_UNLOCKED instead of being guessed from the system clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from hal.types import COUNTER_MODULO

GPS_EPOCH_UNIX_S = 315_964_800
"""1980-01-06T00:00:00Z in Unix seconds; GPS time has no leap seconds."""
HALF_PERIOD_US = COUNTER_MODULO // 2


class GpsClock(Protocol):
    def count_at(self, gps_time_us: int) -> int | None:
        """Counter value (32-bit) at a GPS time (µs since the GPS epoch); None without lock.

        Raises ``ValueError`` for a time the counter cannot name unambiguously (before
        the epoch, or half a counter period or more from the reference).
        """
        ...

    def gps_time_at(self, count_us: int) -> int | None:
        """GPS time (µs since the GPS epoch) at a counter value; None without lock."""
        ...


@dataclass(frozen=True, slots=True)
class GpsReference:
    """One PPS pairing (counter value, GPS time) and the measured crystal ratio.

    ``xtal_ratio`` is counter µs per GPS µs (1 ± 10 ppm on a healthy board). The
    reference is valid for tens of seconds; the daemon replaces it on every PPS
    and passes ``None`` (no clock) once it goes stale.
    """

    count_us: int
    gps_time_us: int
    xtal_ratio: float = 1.0

    def count_at(self, gps_time_us: int) -> int | None:
        offset = round((gps_time_us - self.gps_time_us) * self.xtal_ratio)
        if gps_time_us < 0 or not -HALF_PERIOD_US <= offset < HALF_PERIOD_US:
            raise ValueError(f"GPS time {gps_time_us} µs cannot be named on the counter")
        return (self.count_us + offset) % COUNTER_MODULO

    def gps_time_at(self, count_us: int) -> int | None:
        delta = (count_us - self.count_us + COUNTER_MODULO // 2) % COUNTER_MODULO
        delta -= COUNTER_MODULO // 2
        return self.gps_time_us + round(delta / self.xtal_ratio)
