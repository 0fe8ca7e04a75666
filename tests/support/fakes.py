"""The one fake clock of the test suite.

Time moves only when a test says so. It is callable (seconds, as ``time.monotonic``),
and offers the nanosecond monotonic and wall views the buffer takes; ``t`` and ``now``
are the same seconds value under the two names tests have used.
"""

from __future__ import annotations

WALL_START_NS = 1_700_000_000 * 10**9


class FakeClock:
    """A monotonic clock in integer nanoseconds plus a wall clock that moves with it."""

    def __init__(self, start_s: float = 1000.0, *, mono_ns: int | None = None,
                 wall_ns: int = WALL_START_NS) -> None:
        self.mono = mono_ns if mono_ns is not None else round(start_s * 1e9)
        self.wall = wall_ns

    def __call__(self) -> float:
        return self.mono / 1e9

    @property
    def t(self) -> float:
        return self.mono / 1e9

    @t.setter
    def t(self, seconds: float) -> None:
        self.advance(seconds - self.mono / 1e9)

    now = t

    def monotonic_ns(self) -> int:
        return self.mono

    def wall_ns(self) -> int:
        return self.wall

    def advance(self, seconds: float) -> None:
        """Both clocks move on by ``seconds`` (an NTP step is a test writing ``wall``)."""
        step = round(seconds * 1e9)
        self.mono += step
        self.wall += step
