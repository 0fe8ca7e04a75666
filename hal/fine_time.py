"""SX1303 fine timestamps: nanoseconds since the last GPS PPS, from the packet's timing metrics.

In precision mode the chip stamps the end of the header and appends up to 32
pairs of signed timing metrics to each record. Semtech's reference turns them
into a fine time (``precise_timestamp_calculate``, loragw_sx1302_timestamp.c):

1. move the coarse stamp from the end of the header back to the end of the
   preamble (12 symbols, 14 for SF5/6, plus a quarter symbol less one 125 kHz
   sample, stretched by the packet's frequency error), plus 2138 ticks of filter
   group delay;
2. find the PPS latched before that instant (the last 16 PPS values are kept);
3. the metrics' cumulative sum, averaged (fewer metrics kept at SF10-12), refines
   the tick count since that PPS; a DC-notch delay applies to channels within
   ±75 kHz of the radio centre;
4. ticks → ns (31.25 ns each), corrected by the crystal's measured error (32 M
   over the ticks between two PPS edges).

The reference waits for a full PPS history (16 edges) before it reports any fine
time; so does this module.
"""

from __future__ import annotations

from collections import deque

TICKS_PER_S = 32_000_000
NS_PER_TICK = 31.25
PPS_HISTORY = 16
GROUP_DELAY_TICKS = 2138
METRICS_KEPT = {12: 4, 11: 8, 10: 16}
DEFAULT_METRICS_KEPT = 32
COUNTER_MODULO = 1 << 32


def preamble_offset_ticks(sf: int, freq_error: float) -> int:
    """Ticks from the end of the preamble to the end of the header (step 1)."""
    offset = 256 * (1 << sf) * (8 + 4 + (2 if sf in (5, 6) else 0)) + 256 * ((1 << sf) // 4 - 1)
    return offset + int(offset * freq_error + 0.5)


def dc_notch_delay_ticks(if_hz: float) -> float:
    """Extra delay of the DC notch filter for channels near the radio centre (loragw_sx1302.c)."""
    k = if_hz / 1e3
    if not -75.0 <= k <= 75.0:
        return 0.0
    return 1.7e-6 * k**4 + 2.4e-6 * k**3 - 0.0101 * k**2 - 0.01275 * k + 10.2922


def metrics_mean(metrics: bytes, sf: int) -> float:
    """Mean of the cumulative sum of the kept signed metrics (step 3)."""
    pairs = min(METRICS_KEPT.get(sf, DEFAULT_METRICS_KEPT), len(metrics) // 2)
    values = [b - 256 if b >= 128 else b for b in metrics[:2 * pairs]]
    total, running = 0, 0
    for v in values:
        running += v
        total += running
    return total / len(values) if values else 0.0


class FineTimestamper:
    """Keeps the PPS history and computes each packet's fine time."""

    def __init__(self) -> None:
        self._pps: deque[int] = deque(maxlen=PPS_HISTORY)

    def observe_pps(self, pps_ticks: int) -> None:
        """Record the PPS-latched counter (raw 32 MHz ticks) when it moved (0: no edge yet)."""
        if not self._pps and pps_ticks == 0:
            return
        if not self._pps or self._pps[-1] != pps_ticks:
            self._pps.append(pps_ticks)

    @property
    def ready(self) -> bool:
        return len(self._pps) == PPS_HISTORY

    def compute(self, timestamp_ticks: int, metrics: bytes, sf: int, if_hz: float,
                freq_error: float) -> tuple[int, int] | None:
        """(ns since the reference PPS, that PPS's raw ticks), or None when not computable."""
        if not self.ready or not metrics:
            return None
        eop = (timestamp_ticks - preamble_offset_ticks(sf, freq_error)
               + GROUP_DELAY_TICKS) % COUNTER_MODULO
        history = list(self._pps)
        for i in range(len(history) - 1, 0, -1):
            since = (eop - history[i]) % COUNTER_MODULO
            if since < TICKS_PER_S:
                spacing = (history[i] - history[i - 1]) % COUNTER_MODULO
                break
        else:
            return None
        if spacing == 0 or not 0.8 <= TICKS_PER_S / spacing <= 1.2:
            return None
        ticks = since + metrics_mean(metrics, sf) + dc_notch_delay_ticks(if_hz)
        ns = int(ticks * NS_PER_TICK * TICKS_PER_S / spacing)
        if not 0 <= ns <= 1_000_000_000:
            return None
        return ns, history[i]
