"""The two clocks the buffer reads, behind an interface so tests can drive time."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic time comparable within one boot, and wall time comparable across boots."""

    def monotonic_ns(self) -> int:
        """Boot-relative time (the same clock as ``UplinkRecord.monotonic_ns``)."""
        ...

    def wall_ns(self) -> int:
        """Nanoseconds since the Unix epoch (the same clock as ``received_ns``)."""
        ...


class SystemClock:
    """CLOCK_BOOTTIME and the wall clock: what the radio loop stamps frames with."""

    def monotonic_ns(self) -> int:
        return time.clock_gettime_ns(time.CLOCK_BOOTTIME)

    def wall_ns(self) -> int:
        return time.time_ns()
