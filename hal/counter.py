"""The concentrator's microsecond counter: read it safely, extend it from 27 to 32 bits.

The chip counts 32 MHz ticks in 32 bits, so ticks/32 is a 27-bit microsecond count
that wraps every 134.2 s. The host keeps a wrap count (mod 32) to present a 32-bit
microsecond counter wrapping every ~71.6 minutes, which is what LoRaWAN timing
above the HAL expects. This only works if the counter is read at least once per
134 s; the driver reads it on every ``counter_us()``, on every ``receive()`` that
fetched packets, and on an empty ``receive()`` when the last read is 10 s old.
"""

from __future__ import annotations

from dataclasses import dataclass

from hal.registers import TIMESTAMP_BLOCK
from hal.spi import Sx1302Spi

TICKS_PER_US = 32
US_BITS = 27
US_MODULO = 1 << US_BITS
WRAPS_MODULO = 32  # 2**27 * 32 == 2**32


@dataclass(frozen=True, slots=True)
class CounterSample:
    """Both 32 MHz counters as read from the chip."""

    pps_ticks: int
    inst_ticks: int


def read_counters(spi: Sx1302Spi) -> CounterSample:
    """Read the PPS-latched and free-running counters, retrying a torn read.

    The 8-byte block is not latched as a whole: if a carry ripples into the top
    byte between bytes, the read is torn. So the block is read twice and, if
    either counter's most significant byte differs, read a third time.
    """
    first = spi.burst_read(TIMESTAMP_BLOCK, 8)
    second = spi.burst_read(TIMESTAMP_BLOCK, 8)
    if first[0] != second[0] or first[4] != second[4]:
        first = spi.burst_read(TIMESTAMP_BLOCK, 8)
    return CounterSample(int.from_bytes(first[0:4], "big"), int.from_bytes(first[4:8], "big"))


@dataclass(slots=True)
class _Track:
    ref: int = 0
    wraps: int = 0

    def update(self, us27: int) -> None:
        if us27 < self.ref:
            self.wraps = (self.wraps + 1) % WRAPS_MODULO
        self.ref = us27

    def expand(self, us27: int) -> int:
        return (self.wraps << US_BITS) | us27


class CounterExtender:
    """Tracks wraps of the free-running and PPS counters from successive samples."""

    def __init__(self) -> None:
        self._inst = _Track()
        self._pps = _Track()

    def update(self, sample: CounterSample) -> tuple[int, int]:
        """Account for a new sample; returns (free-running µs, PPS µs), both 32-bit."""
        inst = (sample.inst_ticks // TICKS_PER_US) % US_MODULO
        pps = (sample.pps_ticks // TICKS_PER_US) % US_MODULO
        self._inst.update(inst)
        self._pps.update(pps)
        return self._inst.expand(inst), self._pps.expand(pps)

    def expand_packet(self, timestamp_ticks: int) -> int:
        """32-bit µs of a packet timestamp latched before the latest sample.

        A packet stamped after the last reference value (numerically greater) was
        stamped before the counter wrapped past that reference, so it belongs to
        the previous wrap.
        """
        us27 = (timestamp_ticks // TICKS_PER_US) % US_MODULO
        wraps = self._inst.wraps - (0 if self._inst.ref >= us27 else 1)
        return ((wraps % WRAPS_MODULO) << US_BITS) | us27
