"""The concentrator's time as the downlink path sees it, without touching SPI.

MQTT messages arrive on another thread than the radio loop, which alone reads the
chip. The radio loop reports each counter reading here; the downlink handler asks
for "now" and gets the last reading advanced by the monotonic time elapsed since.
The counter runs from the chip's crystal, so a few ppm of drift over the ~10 ms
between readings is far below every scheduling margin.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from hal.types import COUNTER_MODULO


@dataclass(frozen=True, slots=True)
class RadioNow:
    """Counter reading, concentrator session id and 32-bit wrap count, as in uplink contexts."""

    count_us: int
    session_id: int
    wraps: int

    @property
    def absolute_us(self) -> int:
        """Microseconds since the session's counter started, wraps included."""
        return self.wraps * COUNTER_MODULO + self.count_us


class CounterClock:
    """Extrapolates the last counter reading to the present (thread-safe)."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._last: tuple[RadioNow, float] | None = None

    def observe(self, count_us: int, session_id: int, wraps: int) -> None:
        """Record a reading the radio loop just made."""
        with self._lock:
            self._last = (RadioNow(count_us, session_id, wraps), self._monotonic())

    def reset(self) -> None:
        """Forget the reading (the concentrator is down): :meth:`now` returns None."""
        with self._lock:
            self._last = None

    def now(self) -> RadioNow | None:
        with self._lock:
            last = self._last
        if last is None:
            return None
        reading, at = last
        absolute = reading.absolute_us + max(0, int((self._monotonic() - at) * 1e6))
        return RadioNow(absolute % COUNTER_MODULO, reading.session_id, absolute // COUNTER_MODULO)
