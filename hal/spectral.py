"""Noise floor per channel from the SX1261's spectral scan.

A scan takes ``nb_scan`` RSSI samples at one frequency and returns, for each of
32 levels 0, −4, …, −124 dBm (plus the board's SX1261 RSSI offset), how many
samples were above it, and how many fell below the lowest (``levels_dbm`` and
``results`` in ``sx1261_spectral_scan_get_results``, loragw_sx1261.c). From that
cumulative histogram this module reads the median (the noise floor an installer
cares about) and the loudest level reached (interference peaks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from hal.sx1261 import SCAN_BINS, Sx1261, Sx1261Error

LEVEL_STEP_DB = 4
DEFAULT_SAMPLES = 2000
SCAN_POLL_S = 0.01
SCAN_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class ChannelScan:
    """One frequency's histogram, reduced to what a person reads."""

    frequency_hz: int
    samples: int
    noise_floor_dbm: float
    """Median RSSI, interpolated inside the 4 dB bin where half the samples lie above."""
    peak_dbm: float
    """Upper edge of the highest bin any sample reached."""


def levels_dbm(rssi_offset_db: float) -> list[float]:
    return [-LEVEL_STEP_DB * i + rssi_offset_db for i in range(SCAN_BINS - 1)]


def summarise(frequency_hz: int, counts: tuple[int, ...], rssi_offset_db: float) -> ChannelScan:
    """Median and peak of one scan; ``counts[i]`` samples were above level i.

    The levels are 4 dB apart, so the median is interpolated linearly inside the
    bin where the count crosses half the samples, and the peak is the upper edge
    of the highest bin with any sample (the true maximum is at most that).
    """
    if len(counts) != SCAN_BINS:
        raise Sx1261Error(f"spectral scan returned {len(counts)} bins, expected {SCAN_BINS}")
    levels = levels_dbm(rssi_offset_db)
    total = max(counts[SCAN_BINS - 2] + counts[SCAN_BINS - 1], 1)
    half = total / 2
    lowest = levels[-1] - LEVEL_STEP_DB
    peak: float | None = None
    floor = lowest
    above_prev = 0
    for i, (level, above) in enumerate(zip(levels, counts[:SCAN_BINS - 1], strict=True)):
        if above and peak is None:
            peak = level + LEVEL_STEP_DB if i else level
        if above >= half:
            floor = level + LEVEL_STEP_DB * (above - half) / max(above - above_prev, 1)
            break
        above_prev = above
    return ChannelScan(frequency_hz, total, floor, max(peak if peak is not None else lowest,
                                                       floor))


def scan_channel(radio: Sx1261, frequency_hz: int, *, samples: int = DEFAULT_SAMPLES,
                 rssi_offset_db: float = 0.0,
                 sleep: Callable[[float], None] | None = None) -> ChannelScan:
    """Tune, scan ``samples`` RSSI readings and summarise them."""
    radio.set_rx(frequency_hz)
    radio.spectral_scan_start(samples)
    polls = round(SCAN_TIMEOUT_S / SCAN_POLL_S)
    for _ in range(polls):
        status = radio.spectral_scan_status()
        if status == "completed":
            break
        if status == "aborted":
            raise Sx1261Error(f"spectral scan at {frequency_hz} Hz was aborted")
        if sleep is not None:
            sleep(SCAN_POLL_S)
    else:
        radio.scan_stop()
        raise Sx1261Error(f"spectral scan at {frequency_hz} Hz did not complete in "
                          f"{SCAN_TIMEOUT_S:g} s")
    return summarise(frequency_hz, radio.spectral_scan_counts(), rssi_offset_db)


def scan_band(radio: Sx1261, frequencies: Iterable[int], *, samples: int = DEFAULT_SAMPLES,
              rssi_offset_db: float = 0.0,
              sleep: Callable[[float], None] | None = None) -> list[ChannelScan]:
    """One :func:`scan_channel` per frequency, in order."""
    return [scan_channel(radio, f, samples=samples, rssi_offset_db=rssi_offset_db, sleep=sleep)
            for f in frequencies]
