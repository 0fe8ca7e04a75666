"""Just-in-time TX queue on the concentrator's 32-bit microsecond counter.

The SX1302 holds one scheduled packet per TX chain, so downlinks wait here,
ordered by start time, and each is loaded into the chip a short margin before it
must go out. The queue is pure: every operation takes the current counter reading
and nothing sleeps. Times are compared as signed differences modulo 2^32, which is
correct across the counter's wrap (every ~71.6 min) as long as everything queued
lies within ±35 min of now; the TOO_EARLY limit (minutes) guarantees that.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass, field, replace
from typing import Any

from hal.types import COUNTER_MODULO, TxPacket, TxTiming
from packet_forwarder.downlink.status import TxStatus

_HALF = COUNTER_MODULO // 2


def signed_delta(later: int, earlier: int) -> int:
    """``later - earlier`` on the wrapping 32-bit counter, in -2^31 .. 2^31-1."""
    return (later - earlier + _HALF) % COUNTER_MODULO - _HALF


class ItemKind(enum.Enum):
    DOWNLINK = "downlink"
    BEACON = "beacon"


@dataclass(frozen=True, slots=True)
class QueueItem:
    """A packet waiting for its slot; ``packet.count_us`` is when its first symbol goes out."""

    packet: TxPacket
    toa_us: int
    kind: ItemKind = ItemKind.DOWNLINK
    downlink_id: int = 0
    booking: Any = field(default=None, compare=False)
    """Opaque duty-cycle booking, released if the packet never leaves."""

    @property
    def start(self) -> int:
        return self.packet.count_us


@dataclass(frozen=True, slots=True)
class JitConfig:
    """Scheduling margins (µs). Defaults follow the reference forwarder's values."""

    load_margin_us: int = 40_000
    """A packet is handed to the chip once its start is this close."""
    min_lead_us: int = 30_000
    """A request starting sooner than this is TOO_LATE (it could not be loaded in time)."""
    max_advance_us: int = 512_000_000
    """A request starting later than this is TOO_EARLY."""
    guard_us: int = 1_000
    """Silence kept between two packets. The next packet's start is further kept
    ``load_margin_us`` after that, since it is loaded that long before it starts and the
    chip takes it only once the previous one has left: the reference forwarder's
    jit_enqueue spaces packets by the same pre-delay (sx1302_hal packet_forwarder
    ``jitqueue.c``, TX_JIT_DELAY + TX_START_DELAY before, TX_MARGIN_DELAY after)."""
    beacon_guard_us: int = 3_000_000
    """No downlink may end within this long before a beacon."""
    beacon_reserved_us: int = 2_120_000
    """No downlink may start within this long after a beacon starts."""
    immediate_lead_us: int = 80_000
    """Class C "immediately": the earliest start offered, relative to now."""
    missed_lead_us: int = 1_500
    """An item found with less lead than this at load time has missed its slot."""
    capacity: int = 32

    def __post_init__(self) -> None:
        if not 0 <= self.missed_lead_us <= self.min_lead_us <= self.max_advance_us < _HALF:
            raise ValueError("need 0 <= missed_lead <= min_lead <= max_advance < 2^31 µs")
        if self.immediate_lead_us < self.min_lead_us or self.capacity < 1:
            raise ValueError("immediate_lead_us must be >= min_lead_us, capacity >= 1")


class JitQueue:
    """Ordered TX queue with collision, timing and capacity checks (thread-safe).

    A packet handed out by :meth:`due` is loaded into the chip tens of ms before it
    starts, and the chip holds it until it has left the antenna. It therefore stays
    visible ("in flight") to the collision checks and to class C placement until it
    has ended: otherwise a request arriving in those last milliseconds could be
    placed on top of it, acked OK, and then miss its slot behind a busy chip.
    """

    def __init__(self, config: JitConfig | None = None) -> None:
        self.config = config or JitConfig()
        self._items: list[QueueItem] = []
        self._inflight: list[QueueItem] = []
        self._missed: list[QueueItem] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def schedule(self, item: QueueItem, now_count_us: int) -> TxStatus:
        """Queue a timestamped item; returns OK or the reason it was refused."""
        with self._lock:
            status = self._admit(item, now_count_us)
            if status is TxStatus.OK:
                self._insert(item, now_count_us)
            return status

    def schedule_immediate(self, item: QueueItem,
                           now_count_us: int) -> tuple[TxStatus, QueueItem]:
        """Class C: place ``item`` at the earliest free slot from ``immediate_lead_us`` on.

        Returns the status and the item with its chosen start (TIMESTAMPED, so it
        cannot run into a packet already promised to a class A or B device).
        """
        cfg = self.config
        with self._lock:
            if len(self._items) >= cfg.capacity:
                return TxStatus.QUEUE_FULL, item
            self._prune_inflight(now_count_us)
            busy_us = max((signed_delta(self._busy_end(i), now_count_us)
                           for i in self._inflight), default=0)
            lead = max(cfg.immediate_lead_us, busy_us)
            for other in self._ordered(now_count_us):
                candidate = self._at(item, now_count_us + lead)
                if self._conflict(candidate, other) is None:
                    continue
                lead = max(lead, signed_delta(self._busy_end(other), now_count_us))
            placed = self._at(item, now_count_us + lead)
            status = self._admit(placed, now_count_us)
            if status is TxStatus.OK:
                self._insert(placed, now_count_us)
            return status, placed

    def due(self, now_count_us: int, limit: int = 1) -> list[QueueItem]:
        """Remove and return up to ``limit`` items whose start is within the load margin.

        Items found too late to load are moved to the missed list (see
        :meth:`take_missed`). Call with ``limit=1`` while the chip's TX is free.
        """
        cfg = self.config
        out: list[QueueItem] = []
        with self._lock:
            keep: list[QueueItem] = []
            for item in self._ordered(now_count_us):
                lead = signed_delta(item.start, now_count_us)
                if lead < cfg.missed_lead_us:
                    self._missed.append(item)
                elif lead <= cfg.load_margin_us and len(out) < limit:
                    out.append(item)
                else:
                    keep.append(item)
            self._items = keep
            self._prune_inflight(now_count_us)
            self._inflight += out
        return out

    def in_flight(self, now_count_us: int) -> list[QueueItem]:
        """Packets handed out by :meth:`due` that have not ended yet."""
        with self._lock:
            self._prune_inflight(now_count_us)
            return list(self._inflight)

    def take_missed(self) -> list[QueueItem]:
        """Items that were due but found past their slot since the last call."""
        with self._lock:
            missed, self._missed = self._missed, []
        return missed

    def clear(self) -> list[QueueItem]:
        """Drop everything (the concentrator restarted: queued counter values mean nothing)."""
        with self._lock:
            dropped, self._items = self._items, []
            self._inflight = []
        return dropped

    def snapshot(self, now_count_us: int) -> list[QueueItem]:
        with self._lock:
            return self._ordered(now_count_us)

    # -- internals (callers hold the lock) --------------------------------------------------

    def _ordered(self, now: int) -> list[QueueItem]:
        return sorted(self._items, key=lambda i: signed_delta(i.start, now))

    def _insert(self, item: QueueItem, now: int) -> None:
        self._items.append(item)
        self._items = self._ordered(now)

    @staticmethod
    def _at(item: QueueItem, count_us: int) -> QueueItem:
        packet = replace(item.packet, count_us=count_us % COUNTER_MODULO,
                         timing=TxTiming.TIMESTAMPED)
        return replace(item, packet=packet)

    def _admit(self, item: QueueItem, now: int) -> TxStatus:
        cfg = self.config
        if len(self._items) >= cfg.capacity:
            return TxStatus.QUEUE_FULL
        lead = signed_delta(item.start, now)
        if lead < cfg.min_lead_us:
            return TxStatus.TOO_LATE
        if lead > cfg.max_advance_us:
            return TxStatus.TOO_EARLY
        self._prune_inflight(now)
        for other in (*self._items, *self._inflight):
            conflict = self._conflict(item, other)
            if conflict is not None:
                return conflict
        return TxStatus.OK

    def _prune_inflight(self, now: int) -> None:
        """Forget handed-out packets that have ended."""
        self._inflight = [i for i in self._inflight if signed_delta(self._busy_end(i), now) > 0]

    def _conflict(self, a: QueueItem, b: QueueItem) -> TxStatus | None:
        """The collision status if ``a`` and ``b`` cannot both be sent, else None."""
        cfg = self.config
        if ItemKind.BEACON in (a.kind, b.kind) and a.kind is not b.kind:
            beacon, other = (a, b) if a.kind is ItemKind.BEACON else (b, a)
            begins = signed_delta(other.start, beacon.start)  # other relative to beacon
            if -(other.toa_us + cfg.beacon_guard_us) < begins < cfg.beacon_reserved_us:
                return TxStatus.COLLISION_BEACON
            return None
        begins = signed_delta(b.start, a.start)
        gap = self._gap_us
        if -(b.toa_us + gap) < begins < a.toa_us + gap:
            return TxStatus.COLLISION_BEACON if a.kind is ItemKind.BEACON else (
                TxStatus.COLLISION_PACKET)
        return None

    def _busy_end(self, other: QueueItem) -> int:
        """The first counter value after ``other`` at which a new downlink may start."""
        if other.kind is ItemKind.BEACON:
            return other.start + max(self.config.beacon_reserved_us, other.toa_us)
        return other.start + other.toa_us + self._gap_us

    @property
    def _gap_us(self) -> int:
        """End of one packet to the start of the next: guard, then the next one's loading."""
        return self.config.guard_us + self.config.load_margin_us
