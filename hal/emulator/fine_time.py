"""The SX1303's precision stamps as the emulator produces them, and the fine times they mean.

In precision mode the chip stamps the end of the header (the driver adds the
payload duration back: :func:`hal.timing.precision_timestamp_correction_us`) and
appends timing metrics. The emulator chooses each frame's true end-of-preamble
instant a few ticks off the coarse estimate the reference derives from the stamp
(:mod:`hal.fine_time`), encodes that residue in the metrics, and records the true
fine time (ns since the latched PPS) so tests can compare the driver's result.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hal.fine_time import (
    GROUP_DELAY_TICKS,
    NS_PER_TICK,
    dc_notch_delay_ticks,
    preamble_offset_ticks,
)
from hal.timing import precision_timestamp_correction_us

TICKS_PER_US = 32
COUNTER_TICKS = 1 << 32
METRIC_PAIRS = 4
"""Few enough that the driver keeps them all at every SF (SF12 keeps 4 pairs)."""


@dataclass(slots=True)
class FineTimeModel:
    """Per-frame residues cycle through ``residues`` (ticks, each within int8)."""

    residues: tuple[int, ...] = (7, -12, 3, 25, -4, 0, 18, -21)
    true_fine_ns: list[float] = field(default_factory=list)
    """True fine time of every precision-stamped frame, ns since its PPS."""
    _next: int = 0

    def frame(self, *, end_ticks: int, pps_ticks: int, sf: int, bw_hz: int, cr: int,
              size: int, if_hz: float, freq_error: float) -> tuple[int, bytes]:
        """The stamp and metrics for a CRC-good frame ending on air at ``end_ticks``."""
        stamp = end_ticks - precision_timestamp_correction_us(sf, bw_hz, cr, size, True) \
            * TICKS_PER_US
        residue = self.residues[self._next % len(self.residues)]
        self._next += 1
        eop = stamp - preamble_offset_ticks(sf, freq_error) + GROUP_DELAY_TICKS
        since_pps = (eop - pps_ticks) % COUNTER_TICKS
        self.true_fine_ns.append((since_pps + residue + dc_notch_delay_ticks(if_hz))
                                 * NS_PER_TICK)
        metrics = bytes((residue & 0xFF,)) + bytes(2 * METRIC_PAIRS - 1)
        return stamp % COUNTER_TICKS, metrics
