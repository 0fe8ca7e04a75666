"""Emulated time that moves only when someone sleeps, with GPS seconds passing along.

Used where the emulator must look like a real board whose counter and GPS PPS
agree exactly (``lora-gateway doctor`` on the emulator, and tests), without any
real waiting.
"""

from __future__ import annotations

from hal.emulator.gps import GpsEmulator


class SteppingClock:
    """A clock for ``open_emulated(clock=...)``; ``sleep`` advances it and ticks the GPS."""

    def __init__(self, start_s: float = 100.0) -> None:
        self.t = start_s
        self.gps: GpsEmulator | None = None

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        before = int(self.t)
        self.t += seconds
        if self.gps is not None:
            for _ in range(int(self.t) - before):
                self.gps.second()
