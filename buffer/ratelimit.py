"""Two small rate limiters: the backlog drain and repeated error logging."""

from __future__ import annotations

from collections.abc import Callable


class TokenBucket:
    """Allows ``rate`` events per second with a burst of ``burst_s`` seconds' worth.

    The burst lets short hiccups (a momentarily full in-flight window) clear at
    once while a long backlog still replays at the configured pace; kept small, so
    a reconnect does not dump a second of backlog in front of fresh uplinks. A rate
    of 0 means unlimited.
    """

    def __init__(self, rate_per_s: float, now_ns: Callable[[], int],
                 burst_s: float = 1.0) -> None:
        self._rate = rate_per_s
        self._capacity = max(1.0, rate_per_s * burst_s)
        self._now_ns = now_ns
        self._tokens = self._capacity
        self._last_ns = now_ns()

    def _refill(self) -> None:
        now = self._now_ns()
        elapsed = max(0, now - self._last_ns) / 1e9
        self._last_ns = now
        self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)

    def take(self) -> bool:
        """Consume one token if there is one."""
        if self._rate <= 0:
            return True
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def wait_s(self) -> float:
        """Seconds until the next token (0 when one is available)."""
        if self._rate <= 0:
            return 0.0
        self._refill()
        return max(0.0, (1.0 - self._tokens) / self._rate)


class EveryInterval:
    """Says yes at most once per interval: a storage error repeating every second
    must not flood the journal of a gateway that may run unattended for months."""

    def __init__(self, interval_s: float, now_ns: Callable[[], int]) -> None:
        self._interval_ns = int(interval_s * 1e9)
        self._now_ns = now_ns
        self._last_ns: int | None = None
        self.suppressed = 0

    def ready(self) -> bool:
        now = self._now_ns()
        if self._last_ns is None or now - self._last_ns >= self._interval_ns:
            self._last_ns = now
            return True
        self.suppressed += 1
        return False
