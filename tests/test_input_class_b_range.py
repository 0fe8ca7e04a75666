"""Issue 16 point 1: a class B time the queue cannot schedule unambiguously is TOO_EARLY or
TOO_LATE, never converted modulo the 32-bit counter onto another moment."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.sim.local_broker import LocalBroker
from hal.gps_time import HALF_PERIOD_US, GpsClock, GpsTimeRangeError
from hal.types import COUNTER_MODULO
from packet_forwarder.chirpstack import PROTOBUF, marshal
from packet_forwarder.downlink.clock import RadioNow
from packet_forwarder.downlink.gps import GpsReference
from packet_forwarder.downlink.handler import DownlinkHandler
from packet_forwarder.downlink.status import TxStatus
from tests.support.gateway_proc import NetworkServerStandIn
from tests.support.inprocess import (
    broker,  # noqa: F401  (fixture)
    emulator,
    running,
    send,
)
from tests.test_class_b import START_S, class_b_config, class_b_of, gps_frame, wait_for
from tests.test_downlink_handler import make_handler

pytestmark = pytest.mark.usefixtures("mosquitto_binary")

GPS_NOW_US = 1_300_000_000_000_000
NOW = RadioNow(1_000_000, 1, 0)
DAY_US = 86_400 * 1_000_000
PERIOD_US = COUNTER_MODULO


class HostClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def locked_handler() -> DownlinkHandler:
    handler = make_handler()
    handler.gps = GpsReference(count_us=NOW.count_us, gps_time_us=GPS_NOW_US)
    return handler


def status_for(handler: DownlinkHandler, gps_time_us: int, downlink_id: int = 7) -> TxStatus:
    frame = gps_frame(downlink_id, gps_time_us, b"\x60class-b")
    frame.gateway_id = handler.gateway_id
    result = handler.handle(marshal(frame, PROTOBUF), NOW)
    return result.outcomes[0].status


@pytest.mark.parametrize(("offset_us", "expected"), [
    (50 * DAY_US, TxStatus.TOO_EARLY),                 # 50 days ahead
    (PERIOD_US + 3_000_000, TxStatus.TOO_EARLY),       # would alias onto now + 3 s
    (-PERIOD_US + 3_000_000, TxStatus.TOO_LATE),       # one period back aliases likewise
    (-GPS_NOW_US - 1_000_000, TxStatus.TOO_LATE),      # before the GPS epoch
    (-5_000_000, TxStatus.TOO_LATE),
    (3_000_000, TxStatus.OK),
])
def test_gps_time_out_of_the_queue_range_is_refused_not_aliased(
        offset_us: int, expected: TxStatus) -> None:
    assert status_for(locked_handler(), GPS_NOW_US + offset_us) is expected


def test_a_time_one_period_back_does_not_take_another_downlinks_slot() -> None:
    handler = locked_handler()
    slot = GPS_NOW_US + 3_000_000
    assert status_for(handler, slot, 1) is TxStatus.OK
    assert status_for(handler, slot - PERIOD_US, 2) is TxStatus.TOO_LATE
    assert len(handler.queue) == 1


def test_hal_conversion_refuses_ambiguous_times() -> None:
    host = HostClock()
    clock = GpsClock(host)
    gps0 = 1_400_000_000 * 10**9
    clock.sync(123_456, gps0)
    assert clock.gps_ns_to_count(gps0 + 10**9) == 1_123_456
    with pytest.raises(GpsTimeRangeError):
        clock.gps_ns_to_count(gps0 + HALF_PERIOD_US * 1000)
    with pytest.raises(GpsTimeRangeError):
        clock.gps_ns_to_count(gps0 - (HALF_PERIOD_US + 1) * 1000)
    with pytest.raises(GpsTimeRangeError, match="before the GPS epoch"):
        clock.gps_ns_to_count(-1)
    with pytest.raises(ValueError):  # the adapter's callers catch ValueError
        clock.gps_ns_to_count(gps0 + 50 * DAY_US * 1000)


def test_daemon_refuses_class_b_times_it_cannot_schedule(
        tmp_path: Path, broker: LocalBroker) -> None:
    config = class_b_config(tmp_path, broker.port, emulator_start_gps_s=str(START_S))

    async def scenario() -> None:
        ns = NetworkServerStandIn(broker.port)
        try:
            async with running(config, ns) as daemon:
                cb = class_b_of(daemon)
                await wait_for(lambda: cb.locked, 5.0)
                start_us = START_S * 1_000_000
                cases = [(701, start_us + 50 * DAY_US, TxStatus.TOO_EARLY),
                         (702, 0, TxStatus.TOO_LATE),
                         (703, start_us + 6_000_000 - PERIOD_US, TxStatus.TOO_LATE),
                         (704, start_us + 6_000_000 + PERIOD_US, TxStatus.TOO_EARLY)]
                for downlink_id, gps_us, expected in cases:
                    payload = b"\x60far-" + str(downlink_id).encode()
                    assert await send(ns, gps_frame(downlink_id, gps_us, payload)) == [expected]
                await asyncio.sleep(0.3)
                assert not [e for e in emulator(daemon).tx_log if e.payload.startswith(b"\x60far")]
        finally:
            ns.close()

    asyncio.run(scenario())
