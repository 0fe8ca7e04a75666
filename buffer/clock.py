"""The two clocks the buffer reads, behind an interface so tests can drive time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from buffer.types import Timing, UplinkRecord


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


class SyncState:
    """Whether the wall clock is synchronised now, asked of ``probe`` at most once a second.

    The probe (``adjtimex`` in the daemon) is a system call: cheap, but not worth
    making once per published frame. Without a probe the state is learnt from the
    frames themselves, which the radio loop stamps with the kernel's answer.
    """

    def __init__(self, probe: Callable[[], bool] | None, now_ns: Callable[[], int],
                 interval_s: float = 1.0) -> None:
        self._probe = probe
        self._now_ns = now_ns
        self._interval_ns = int(interval_s * 1e9)
        self._checked_ns: int | None = None
        self._synced = True

    def observe(self, frame_synced: bool) -> None:
        """A frame arrived stamped with this sync state (used when there is no probe)."""
        if self._probe is None:
            self._synced = frame_synced

    def synced(self) -> bool:
        if self._probe is None:
            return self._synced
        now = self._now_ns()
        if self._checked_ns is None or now - self._checked_ns >= self._interval_ns:
            self._checked_ns = now
            try:
                self._synced = bool(self._probe())
            except Exception:  # a failing probe must not stop publishing; assume the worst
                self._synced = False
        return self._synced


def frame_timing(record: UplinkRecord, *, boot_id: str, now_mono_ns: int, now_wall_ns: int,
                 synced_now: bool) -> Timing:
    """The true receive time of ``record`` as far as it can be known now.

    * stamped by a synchronised clock: its ``received_ns`` is right, nothing changes;
    * stamped unsynchronised in this boot, clock synchronised since: the boot clock
      still measures the elapsed time exactly, so
      ``true = now_wall - (now_boottime - frame_boottime)``;
    * unsynchronised and no correction possible yet (same boot): leave the body's
      ``gw_time`` (the radio loop only sets a plausible one) and flag it;
    * unsynchronised in another boot: the elapsed time is lost with the boot, so
      ``gw_time`` is removed and flagged rather than published wrong.
    """
    same_boot = record.boot_id == boot_id
    hold_ns: int | None = None
    if same_boot:
        hold_ns = now_mono_ns - record.monotonic_ns
    elif record.clock_synced and synced_now:
        hold_ns = now_wall_ns - record.received_ns
    hold_ms = None if hold_ns is None else max(0, hold_ns // 1_000_000)
    if record.clock_synced:
        return Timing(record.received_ns, False, True, False, hold_ms)
    if same_boot and synced_now:
        true_ns = now_wall_ns - (now_mono_ns - record.monotonic_ns)
        return Timing(true_ns, True, True, True, hold_ms)
    if same_boot:
        return Timing(None, False, False, False, hold_ms)
    return Timing(None, True, False, False, hold_ms)
