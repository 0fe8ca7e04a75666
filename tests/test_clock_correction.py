"""Receive times of frames stamped before NTP synchronised: corrected, flagged, never 1970.

A Raspberry Pi has no RTC. The buffer keeps CLOCK_BOOTTIME and the boot id with
each frame; at publish it rebuilds the true receive time when it can
(``now_wall - (now_boottime - frame_boottime)`` in the same boot, clock synced)
and otherwise removes ``gw_time`` and says ``clock_synced=false``. The clocks and
the sync probe are injected, so the tests move time by hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chirpstack_api.gw import gw_pb2
from hypothesis import given
from hypothesis import strategies as st

from buffer.clock import SyncState, frame_timing
from buffer.types import AckCallback, Delivery, UplinkRecord
from buffer.uplink_buffer import UplinkBuffer
from gateway.uplink_sink import MqttUplinkSink
from packet_forwarder.topics import Topics
from tests.support.buffer import FakeClock, FakeSink, make_config

BOOT = "boot-a"
S = 10**9
EPOCH_2024 = 1_704_067_200 * S
UNSYNCED_WALL = 40 * S  # a Pi that booted without network thinks it is January 1970
SYNCED_WALL = 1_750_000_000 * S


def record(*, synced: bool, boot: str = BOOT, received_ns: int = UNSYNCED_WALL,
           mono: int = 100 * S, gw_time_ns: int | None = None) -> UplinkRecord:
    frame = gw_pb2.UplinkFrame(phy_payload=b"\x40\x01\x02\x03\x04\x00\x07\x00\x01")
    frame.rx_info.gateway_id = "0016c001ff10a235"
    if gw_time_ns is not None:
        frame.rx_info.gw_time.FromNanoseconds(gw_time_ns)
    return UplinkRecord(1, "04030201", frame.SerializeToString(), received_ns, mono, boot,
                        synced)


class FakeLink:
    """Just enough of ``MqttLink`` for the sink: captures what would be published."""

    def __init__(self) -> None:
        self.published: list[bytes] = []

    def add_ready_listener(self, _listener: Callable[[], None]) -> None:
        pass

    def can_publish(self) -> bool:
        return True

    def publish(self, _topic: str, payload: bytes, *, qos: int = 1,
                on_result: AckCallback | None = None, **_: Any) -> bool:
        self.published.append(payload)
        return True


def published(delivery: Delivery) -> gw_pb2.UplinkFrame:
    link = FakeLink()
    sink = MqttUplinkSink(link, Topics("eu868", "0016c001ff10a235"))  # type: ignore[arg-type]
    sink.send(delivery, lambda ok: None)
    return gw_pb2.UplinkFrame.FromString(link.published[0])


def test_synced_frame_is_left_alone() -> None:
    rec = record(synced=True, received_ns=SYNCED_WALL, gw_time_ns=SYNCED_WALL)
    t = frame_timing(rec, boot_id=BOOT, now_mono_ns=rec.monotonic_ns + 3 * S,
                     now_wall_ns=SYNCED_WALL + 3 * S, synced_now=True)
    assert (t.gw_time_ns, t.rewrite_gw_time, t.clock_synced, t.hold_ms) == (
        SYNCED_WALL, False, True, 3000)
    assert not t.needs_rewrite
    out = published(Delivery(rec, False, 0, t))
    assert out.SerializeToString() == rec.body  # the hot path never re-encodes


def test_same_boot_frame_is_corrected_once_ntp_syncs() -> None:
    rec = record(synced=False)  # body has no gw_time: the radio loop saw 1970
    now_mono = rec.monotonic_ns + 90 * S  # 90 s later NTP has set the clock
    t = frame_timing(rec, boot_id=BOOT, now_mono_ns=now_mono, now_wall_ns=SYNCED_WALL,
                     synced_now=True)
    assert t.gw_time_ns == SYNCED_WALL - 90 * S and t.clock_synced and t.corrected
    out = published(Delivery(rec, True, t.hold_ms or 0, t))
    assert out.rx_info.gw_time.ToNanoseconds() == SYNCED_WALL - 90 * S
    assert dict(out.rx_info.metadata) == {"buffered": "true", "hold_ms": "90000",
                                          "gw_time_corrected": "true"}


def test_same_boot_still_unsynced_keeps_plausible_time_but_flags_it() -> None:
    plausible = EPOCH_2024 + 5 * S  # e.g. fake-hwclock restored a recent time
    rec = record(synced=False, received_ns=plausible, gw_time_ns=plausible)
    t = frame_timing(rec, boot_id=BOOT, now_mono_ns=rec.monotonic_ns + S,
                     now_wall_ns=plausible + S, synced_now=False)
    out = published(Delivery(rec, False, 0, t))  # even a live frame says it is unsynced
    assert out.rx_info.gw_time.ToNanoseconds() == plausible
    assert dict(out.rx_info.metadata) == {"clock_synced": "false"}


def test_other_boot_unsynced_frame_loses_gw_time_and_hold() -> None:
    rec = record(synced=False, boot="boot-old", received_ns=EPOCH_2024,
                 gw_time_ns=EPOCH_2024)
    t = frame_timing(rec, boot_id=BOOT, now_mono_ns=5 * S, now_wall_ns=SYNCED_WALL,
                     synced_now=True)
    assert t.gw_time_ns is None and t.rewrite_gw_time and not t.clock_synced
    assert t.hold_ms is None
    out = published(Delivery(rec, True, 0, t))
    assert not out.rx_info.HasField("gw_time")
    assert dict(out.rx_info.metadata) == {"buffered": "true", "clock_synced": "false"}


def test_other_boot_synced_frame_holds_by_wall_clock() -> None:
    rec = record(synced=True, boot="boot-old", received_ns=SYNCED_WALL - 600 * S)
    t = frame_timing(rec, boot_id=BOOT, now_mono_ns=5 * S, now_wall_ns=SYNCED_WALL,
                     synced_now=True)
    assert t.hold_ms == 600_000 and t.gw_time_ns == rec.received_ns
    # ... but not while this boot's clock is itself unsynchronised
    t2 = frame_timing(rec, boot_id=BOOT, now_mono_ns=5 * S, now_wall_ns=UNSYNCED_WALL,
                      synced_now=False)
    assert t2.hold_ms is None and t2.clock_synced


@given(synced=st.booleans(), same_boot=st.booleans(), synced_now=st.booleans(),
       received=st.integers(0, 2 * SYNCED_WALL), elapsed=st.integers(0, 10**6 * S))
def test_never_an_unsynced_time_presented_as_true(synced: bool, same_boot: bool,
                                                   synced_now: bool, received: int,
                                                   elapsed: int) -> None:
    rec = record(synced=synced, received_ns=received, mono=10 * S)
    now_wall = SYNCED_WALL if synced_now else UNSYNCED_WALL
    t = frame_timing(rec, boot_id=BOOT if same_boot else "other",
                     now_mono_ns=10 * S + elapsed, now_wall_ns=now_wall, synced_now=synced_now)
    if t.clock_synced and t.gw_time_ns is not None:
        # a time called true came from a synchronised clock, directly or corrected
        assert synced or (same_boot and synced_now and t.gw_time_ns == now_wall - elapsed)
    if not synced and not (same_boot and synced_now):
        assert not t.clock_synced


def test_sync_probe_is_asked_at_most_once_a_second() -> None:
    clock = FakeClock()
    calls: list[int] = []

    def probe() -> bool:
        calls.append(1)
        return len(calls) > 1

    state = SyncState(probe, clock.monotonic_ns)
    assert [state.synced() for _ in range(5)] == [False] * 5 and len(calls) == 1
    clock.advance(1.0)
    assert state.synced() and len(calls) == 2


def test_buffer_corrects_a_held_frame_when_the_clock_syncs(tmp_path: Path) -> None:
    """Received at boot with a 1970 clock, held while offline, published after NTP."""
    clock = FakeClock(mono_ns=20 * S, wall_ns=UNSYNCED_WALL)
    ntp = {"synced": False}

    async def main() -> list[Delivery]:
        sink = FakeSink(up=False)
        buf = UplinkBuffer(make_config(tmp_path / "b.sqlite"), sink, boot_id=BOOT, clock=clock,
                           clock_synced=lambda: ntp["synced"])
        await buf.open()
        rec = record(synced=False)
        buf.submit("d1", rec.body, received_ns=clock.wall, monotonic_ns=clock.mono,
                   clock_synced=False)
        clock.advance(30.0)
        clock.wall = SYNCED_WALL  # NTP steps the clock
        ntp["synced"] = True
        sink.up = True
        buf.sink_ready()
        sink.ack_all()
        await buf.close()
        return sink.log

    (delivery,) = asyncio.run(main())
    assert delivery.replayed and delivery.timing is not None
    assert delivery.timing.gw_time_ns == SYNCED_WALL - 30 * S
    out = published(delivery)
    assert out.rx_info.gw_time.ToNanoseconds() == SYNCED_WALL - 30 * S
    assert out.rx_info.metadata["hold_ms"] == "30000"
