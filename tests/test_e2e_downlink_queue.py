"""The TX queue keeps a loaded packet in the collision checks until it has left.

(Pure, no broker: the end-to-end burst test shows the effect; this pins the rule.)
"""

from __future__ import annotations

from hal.types import Modulation, TxPacket, TxTiming
from packet_forwarder.downlink.jit import JitConfig, JitQueue, QueueItem
from packet_forwarder.downlink.status import TxStatus

CFG = JitConfig(guard_us=45_000)
GAP = CFG.guard_us + CFG.load_margin_us
"""A packet's end to the next one's start: the guard, then the time to load the next one."""
TOA = 150_000


def item(start: int, downlink_id: int) -> QueueItem:
    packet = TxPacket(payload=b"\x60" + bytes(9), frequency_hz=869_525_000, power_dbm=14,
                      modulation=Modulation.LORA, spreading_factor=9, bandwidth_hz=125_000,
                      timing=TxTiming.TIMESTAMPED, count_us=start)
    return QueueItem(packet, TOA, downlink_id=downlink_id)


def loaded_first(now: int = 1_000_000) -> tuple[JitQueue, QueueItem, int]:
    """A queue whose first packet (class C, placed now) has just been handed to the chip."""
    q = JitQueue(CFG)
    status, first = q.schedule_immediate(item(0, 1), now)
    assert status is TxStatus.OK
    load_at = first.start - CFG.load_margin_us + 1000
    assert q.due(load_at) == [first] and len(q) == 0
    return q, first, load_at


def test_class_c_after_a_load_is_placed_after_the_packet_on_air() -> None:
    q, first, now = loaded_first()
    status, second = q.schedule_immediate(item(0, 2), now)
    assert status is TxStatus.OK
    assert second.start >= first.start + TOA + GAP


def test_class_a_on_top_of_the_packet_on_air_is_a_collision() -> None:
    q, first, now = loaded_first()
    assert q.schedule(item(first.start + TOA // 2, 3), now) is TxStatus.COLLISION_PACKET
    assert q.schedule(item(first.start + TOA + GAP + 1, 4), now) is TxStatus.OK


def test_a_packet_that_has_left_no_longer_blocks() -> None:
    q, first, _ = loaded_first()
    after = first.start + TOA + GAP + 1
    status, placed = q.schedule_immediate(item(0, 5), after)
    assert status is TxStatus.OK and placed.start == after + CFG.immediate_lead_us


def test_clear_forgets_the_packet_on_air() -> None:
    q, first, now = loaded_first()
    q.clear()
    assert q.schedule(item(first.start + TOA // 2, 6), now) is TxStatus.OK
