"""Counters the daemon keeps for stats, ``status`` and the closing log line."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from hal.types import COUNTER_MODULO, RxPacket


@dataclass(slots=True)
class UplinkCounters:
    """Radio-side counts since start; read by the stats publisher."""

    rx_received: int = 0
    rx_ok: int = 0
    forwarded: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    per_frequency: Counter[int] = field(default_factory=Counter)
    per_modulation: Counter[tuple[str, int, int, int, str]] = field(default_factory=Counter)
    """(modulation, spreading factor, bandwidth Hz, FSK bit rate, code rate) of received packets."""
    last_packet: tuple[RxPacket, str, int] | None = None
    """The last forwarded packet, its device key and its receive time (ns): kept as is,
    because building the ``status`` view of it for every frame costs more than the
    rare ``status`` call that reads it."""

    @property
    def last_uplink(self) -> dict[str, object] | None:
        """Device, frequency, RSSI and time of the last forwarded uplink (for ``status``)."""
        if self.last_packet is None:
            return None
        packet, device, received_ns = self.last_packet
        return {"at_unix": received_ns // 1_000_000_000, "device": device,
                "frequency": packet.frequency_hz, "rssi": round(packet.rssi_dbm)}

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1


class CounterEpoch:
    """Counts wraps of the 32-bit µs counter from successive readings.

    The context sent with each uplink carries this wrap count, so a downlink that
    answers an uplink from an earlier wrap (a replayed, buffered frame) can be
    recognised as stale instead of being scheduled ~71.6 minutes off.
    Readings must come at least every half wrap (~35 min); the radio loop reads far
    more often than that.
    """

    def __init__(self) -> None:
        self._last: int | None = None
        self.wraps = 0

    def observe(self, count_us: int) -> int:
        if self._last is not None and count_us < self._last and (
            self._last - count_us > COUNTER_MODULO // 2
        ):
            self.wraps += 1
        if self._last is None or self._is_after(count_us, self._last):
            self._last = count_us
        return self.wraps

    def wraps_for(self, count_us: int) -> int:
        """Wrap count for a timestamp at or slightly before the latest reading."""
        if self._last is not None and count_us > self._last and (
            count_us - self._last > COUNTER_MODULO // 2
        ):
            return self.wraps - 1
        return self.wraps

    @staticmethod
    def _is_after(a: int, b: int) -> bool:
        return (a - b) % COUNTER_MODULO < COUNTER_MODULO // 2
