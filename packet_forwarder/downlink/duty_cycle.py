"""Duty-cycle accounting per regulatory sub-band over a sliding window (an hour in EU868).

Every accepted downlink books its exact time on air against the sub-band holding
its frequency; a new one is refused when the window ending with it would hold more
than the sub-band allows. Bookings for the future (downlinks queued up to minutes
ahead) count as if already sent, which is slightly conservative and never lets the
limit be exceeded. A booking can be released when the packet never went out.
The clock is injected (seconds, monotonic) so tests step time instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from packet_forwarder.regions.model import Region, SubBand


@dataclass(frozen=True, slots=True)
class Booking:
    """One transmission counted against a sub-band: start (clock seconds) and duration."""

    band: str
    start_s: float
    toa_us: int

    @property
    def end_s(self) -> float:
        return self.start_s + self.toa_us / 1e6


@dataclass(frozen=True, slots=True)
class BandUsage:
    """For stats: what a sub-band may carry per window and what it carries now (µs)."""

    name: str
    min_hz: int
    max_hz: int
    load_max_us: int
    load_tracked_us: int


class DutyCycle:
    """Sliding-window time-on-air budget per sub-band of a region (thread-safe)."""

    def __init__(self, region: Region, clock: Callable[[], float] = time.monotonic) -> None:
        self._bands = [b for b in region.sub_bands if b.duty_cycle is not None]
        self._window_s = float(region.duty_cycle_window_s)
        self._clock = clock
        self._bookings: dict[str, deque[Booking]] = {b.name: deque() for b in self._bands}
        self._lock = threading.Lock()

    @property
    def window_s(self) -> float:
        return self._window_s

    def _band(self, frequency_hz: int) -> SubBand | None:
        return next((b for b in self._bands if b.contains(frequency_hz)), None)

    def limit_us(self, band: SubBand) -> int:
        return int((band.duty_cycle or 0.0) * self._window_s * 1e6)

    def _prune(self, now_s: float) -> None:
        for q in self._bookings.values():
            while q and q[0].end_s <= now_s - self._window_s:
                q.popleft()

    def _load_us(self, band: str, window_end_s: float) -> int:
        start = window_end_s - self._window_s
        return sum(b.toa_us for b in self._bookings[band] if b.end_s > start)

    def would_exceed(self, frequency_hz: int, toa_us: int, *, lead_s: float = 0.0) -> bool:
        """True when sending ``toa_us`` on ``frequency_hz`` ``lead_s`` from now breaks the limit.

        Frequencies outside every limited sub-band have no budget to exceed.
        """
        band = self._band(frequency_hz)
        if band is None:
            return False
        start = self._clock() + lead_s
        with self._lock:
            self._prune(self._clock())
            load = self._load_us(band.name, start + toa_us / 1e6)
        return load + toa_us > self.limit_us(band)

    def record(self, frequency_hz: int, toa_us: int, *, lead_s: float = 0.0) -> Booking | None:
        """Book a transmission; None when the frequency is in no limited sub-band."""
        band = self._band(frequency_hz)
        if band is None:
            return None
        booking = Booking(band.name, self._clock() + lead_s, toa_us)
        with self._lock:
            q = self._bookings[band.name]
            q.append(booking)
            if len(q) > 1 and q[-2].start_s > booking.start_s:  # keep start order for pruning
                self._bookings[band.name] = deque(sorted(q, key=lambda b: b.start_s))
        return booking

    def release(self, booking: Booking | None) -> None:
        """Give back a booking whose packet was never emitted (missed, or the chip refused it)."""
        if booking is None:
            return
        with self._lock:
            q = self._bookings.get(booking.band)
            if q is not None and booking in q:
                q.remove(booking)

    def usage(self) -> list[BandUsage]:
        """Per limited sub-band: budget and time on air booked in the window ending now."""
        now = self._clock()
        with self._lock:
            self._prune(now)
            return [BandUsage(b.name, b.min_hz, b.max_hz, self.limit_us(b),
                              sum(x.toa_us for x in self._bookings[b.name]
                                  if x.end_s > now - self._window_s))
                    for b in self._bands]
