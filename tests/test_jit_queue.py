"""The JIT TX queue on the wrapping 32-bit counter: timing, collisions, capacity, loading."""

from __future__ import annotations

import pytest

from hal.types import COUNTER_MODULO, Modulation, TxPacket, TxTiming
from packet_forwarder.downlink.jit import (
    ItemKind,
    JitConfig,
    JitQueue,
    QueueItem,
    signed_delta,
)
from packet_forwarder.downlink.status import TxStatus

TOA = 50_000
CFG = JitConfig()
GAP = CFG.guard_us + CFG.load_margin_us
"""From one packet's end to the next one's start: the guard, then the time to load it."""


def item(start: int, toa: int = TOA, kind: ItemKind = ItemKind.DOWNLINK, tag: int = 0) -> QueueItem:
    packet = TxPacket(b"\x60" + bytes(12), 868_100_000, 14, Modulation.LORA, 7, 125_000,
                      count_us=start % COUNTER_MODULO)
    return QueueItem(packet, toa, kind, downlink_id=tag)


def test_signed_delta_across_the_wrap() -> None:
    assert signed_delta(5, COUNTER_MODULO - 5) == 10
    assert signed_delta(COUNTER_MODULO - 5, 5) == -10
    assert signed_delta(1000, 10) == 990


@pytest.mark.parametrize(("lead", "status"), [
    (CFG.min_lead_us - 1, TxStatus.TOO_LATE),
    (CFG.min_lead_us, TxStatus.OK),
    (CFG.max_advance_us, TxStatus.OK),
    (CFG.max_advance_us + 1, TxStatus.TOO_EARLY),
    (-5_000_000, TxStatus.TOO_LATE),
])
def test_lead_limits(lead: int, status: TxStatus) -> None:
    now = 7_000_000
    assert JitQueue().schedule(item(now + lead), now) is status


def test_collision_is_overlap_plus_guard_and_load_time() -> None:
    q = JitQueue()
    now = 0
    t = 1_000_000
    assert q.schedule(item(t), now) is TxStatus.OK
    end = t + TOA + GAP
    assert q.schedule(item(end - 1), now) is TxStatus.COLLISION_PACKET
    assert q.schedule(item(t - TOA - GAP + 1), now) is TxStatus.COLLISION_PACKET
    assert q.schedule(item(t + 10_000, toa=1000), now) is TxStatus.COLLISION_PACKET
    assert q.schedule(item(end), now) is TxStatus.OK
    assert q.schedule(item(t - TOA - GAP), now) is TxStatus.OK
    assert len(q) == 3


def test_queue_full() -> None:
    q = JitQueue(JitConfig(capacity=2))
    assert q.schedule(item(1_000_000), 0) is TxStatus.OK
    assert q.schedule(item(2_000_000), 0) is TxStatus.OK
    assert q.schedule(item(3_000_000), 0) is TxStatus.QUEUE_FULL
    status, _ = q.schedule_immediate(item(0), 0)
    assert status is TxStatus.QUEUE_FULL


def test_due_loads_in_time_order_within_the_margin() -> None:
    q = JitQueue()
    now = 0
    q.schedule(item(3_000_000, tag=3), now)
    q.schedule(item(1_000_000, tag=1), now)
    q.schedule(item(2_000_000, tag=2), now)
    assert q.due(1_000_000 - CFG.load_margin_us - 1) == []
    loaded = q.due(1_000_000 - CFG.load_margin_us)
    assert [i.downlink_id for i in loaded] == [1]
    assert [i.downlink_id for i in q.due(2_000_000 - 10_000)] == [2]
    assert q.due(2_000_000, limit=0) == []
    assert len(q) == 1


def test_busy_chip_makes_an_item_miss_its_slot() -> None:
    q = JitQueue()
    q.schedule(item(1_000_000, tag=1), 0)
    assert q.due(995_000, limit=0) == []         # TX busy: nothing loaded
    assert q.due(999_000) == []                   # lead 1 ms < missed_lead: too late to load
    assert [i.downlink_id for i in q.take_missed()] == [1]
    assert q.take_missed() == [] and len(q) == 0


def test_scheduling_across_the_counter_wrap() -> None:
    q = JitQueue()
    now = COUNTER_MODULO - 300_000
    start = (now + 1_000_000) % COUNTER_MODULO        # 700 ms after the wrap
    assert start == 700_000
    assert q.schedule(item(start, tag=1), now) is TxStatus.OK
    assert q.schedule(item(COUNTER_MODULO - 100_000, tag=0), now) is TxStatus.OK  # before wrap
    # a packet straddling the wrap collides with one just after it
    assert q.schedule(item(start - 20_000), now) is TxStatus.COLLISION_PACKET
    assert [i.downlink_id for i in q.snapshot(now)] == [0, 1]
    assert [i.downlink_id for i in q.due(COUNTER_MODULO - 100_000 - 20_000)] == [0]
    assert q.due(COUNTER_MODULO - 1) == []
    assert [i.downlink_id for i in q.due(start - 30_000)] == [1]


def test_beacon_guard_and_reserved_windows() -> None:
    q = JitQueue()
    beacon_at = 10_000_000
    assert q.schedule(item(beacon_at, toa=152_576, kind=ItemKind.BEACON), 0) is TxStatus.OK
    before = beacon_at - CFG.beacon_guard_us - TOA
    assert q.schedule(item(before + 1), 0) is TxStatus.COLLISION_BEACON
    assert q.schedule(item(beacon_at + CFG.beacon_reserved_us - 1), 0) is TxStatus.COLLISION_BEACON
    assert q.schedule(item(beacon_at + CFG.beacon_reserved_us), 0) is TxStatus.OK
    assert q.schedule(item(before), 0) is TxStatus.OK


def test_immediate_takes_the_first_free_gap() -> None:
    q = JitQueue()
    now = 1_000
    first = now + CFG.immediate_lead_us
    q.schedule(item(first + 20_000, tag=1), now)      # blocks the earliest slot
    status, placed = q.schedule_immediate(item(0, tag=2), now)
    assert status is TxStatus.OK
    assert placed.start == first + 20_000 + TOA + GAP
    assert placed.packet.timing is TxTiming.TIMESTAMPED
    status, placed2 = q.schedule_immediate(item(0, tag=3), now)
    assert status is TxStatus.OK
    assert placed2.start == placed.start + TOA + GAP
    starts = [i.start for i in q.snapshot(now)]
    assert starts == sorted(starts) and len(starts) == 3


def test_immediate_skips_beacon_window() -> None:
    q = JitQueue()
    q.schedule(item(CFG.immediate_lead_us + CFG.beacon_guard_us, toa=152_576,
                    kind=ItemKind.BEACON), 0)
    status, placed = q.schedule_immediate(item(0), 0)
    assert status is TxStatus.OK
    assert placed.start == CFG.immediate_lead_us + CFG.beacon_guard_us + CFG.beacon_reserved_us


def test_clear_returns_everything() -> None:
    q = JitQueue()
    q.schedule(item(1_000_000), 0)
    assert len(q.clear()) == 1 and len(q) == 0


def test_inconsistent_config_is_refused() -> None:
    with pytest.raises(ValueError):
        JitConfig(min_lead_us=10, missed_lead_us=20)
    with pytest.raises(ValueError):
        JitConfig(immediate_lead_us=1)


def test_a_loaded_packet_still_blocks_its_slot_until_it_has_ended() -> None:
    q = JitQueue()
    start = 1_000_000
    q.schedule(item(start, tag=1), 0)
    now = start - CFG.load_margin_us // 2
    [loaded] = q.due(now)
    assert loaded.downlink_id == 1 and len(q) == 0
    assert q.in_flight(now) == [loaded]
    # a class A answer on top of the packet the chip now holds is a collision ...
    assert q.schedule(item(start + TOA // 2, tag=2), now) is TxStatus.COLLISION_PACKET
    # ... and class C is placed after it even when the usual lead would overlap it
    just_before = start - CFG.immediate_lead_us + 1_000
    status, placed = q.schedule_immediate(item(0, tag=3), just_before)
    assert status is TxStatus.OK
    assert placed.start == start + TOA + GAP
    # once it has ended (plus the guard) it is forgotten
    later = start + TOA + GAP + 1
    assert q.in_flight(later) == []
    assert q.schedule(item(placed.start + TOA + GAP, tag=4), later) is TxStatus.OK
    q.clear()
    assert q.in_flight(later) == []


def test_back_to_back_packets_leave_time_to_load_the_second_after_the_first_ends() -> None:
    """The chip takes the next packet only once the previous one has left; it is loaded
    ``load_margin_us`` before its start, so that much free time must follow the guard."""
    q = JitQueue()
    start = 1_000_000
    assert q.schedule(item(start, tag=1), 0) is TxStatus.OK
    too_close = start + TOA + CFG.guard_us + CFG.load_margin_us // 2
    assert q.schedule(item(too_close, tag=2), 0) is TxStatus.COLLISION_PACKET
    status, placed = q.schedule_immediate(item(0, tag=3), start - CFG.immediate_lead_us)
    assert status is TxStatus.OK
    # when it is due (load margin before its start) the first packet has ended
    assert signed_delta(placed.start - CFG.load_margin_us, start + TOA) >= CFG.guard_us
