"""MqttUplinkSink against a real broker: what lands on event/up, and failure reporting."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from chirpstack_api.gw import gw_pb2

from buffer.types import Delivery, UndeliverableError, UplinkRecord
from gateway.uplink_sink import MqttUplinkSink
from hal.types import CrcStatus, Modulation, RxPacket
from packet_forwarder.chirpstack import build_uplink_frame, make_context
from packet_forwarder.mqtt_link import MqttLink
from tests.support.broker import MosquittoBroker, Subscriber
from tests.support.mqtt_harness import GW, TOPICS, in_thread, run, settings, until

RX = RxPacket(payload=b"\x40\x01\x02\x03\x04\x00\x01\x00\x01" + bytes(8), frequency_hz=867_100_000,
              if_chain=0, rf_chain=0, modulation=Modulation.LORA, spreading_factor=7,
              bandwidth_hz=125_000, code_rate="4/5", crc_status=CrcStatus.CRC_OK,
              rssi_dbm=-80.0, snr_db=7.5, count_us=42)
BODY = build_uplink_frame(RX, gateway_id=GW, uplink_id=7, gw_time_ns=None,
                          context=make_context(42, 9, 0)).SerializeToString()


def delivery(body: bytes = BODY, *, replayed: bool = False, synced: bool = True,
             seq: int = 1) -> Delivery:
    rec = UplinkRecord(seq=seq, device="01020304", body=body, received_ns=0, monotonic_ns=0,
                       boot_id="b", clock_synced=synced)
    return Delivery(rec, replayed=replayed, hold_ms=5000 if replayed else 0)


async def connected_sink(url: str, marshaler: str = "protobuf") -> tuple[MqttUplinkSink, Any]:
    link = MqttLink(settings(url), TOPICS, on_command=lambda n, p: None, marshaler=marshaler)
    sink = MqttUplinkSink(link, TOPICS, marshaler)
    ready: list[int] = []
    sink.ready_callback = lambda: ready.append(1)
    task = asyncio.create_task(link.run())
    await until(lambda: sink.can_send() and bool(ready), "sink ready after connect")
    return sink, (link, task)


async def close(handle: Any) -> None:
    link, task = handle
    await link.stop()
    await asyncio.wait_for(task, 10)


def test_live_and_replayed_frames_on_event_up(broker: MosquittoBroker) -> None:
    sub = Subscriber(broker.port, TOPICS.event("up"))

    async def scenario() -> None:
        sink, handle = await connected_sink(broker.url)
        results: list[bool] = []
        sink.send(delivery(), results.append)
        sink.send(delivery(replayed=True, synced=False, seq=2), results.append)
        await until(lambda: len(results) == 2, "acks")
        assert results == [True, True]
        got = await in_thread(lambda: sub.wait_for(lambda m: len(m) >= 2))
        assert got[0].payload == BODY  # live: the stored bytes as they are
        replayed = gw_pb2.UplinkFrame.FromString(got[1].payload)
        assert dict(replayed.rx_info.metadata) == {"buffered": "true", "hold_ms": "5000",
                                                   "clock_synced": "false"}
        await close(handle)

    try:
        run(scenario())
    finally:
        sub.close()


def test_json_marshaler(broker: MosquittoBroker) -> None:
    sub = Subscriber(broker.port, TOPICS.event("up"))

    async def scenario() -> None:
        sink, handle = await connected_sink(broker.url, "json")
        results: list[bool] = []
        sink.send(delivery(replayed=True), results.append)
        await until(lambda: results == [True], "ack")
        got = await in_thread(lambda: sub.wait_for(lambda m: len(m) >= 1))
        doc = json.loads(got[0].payload)
        assert doc["rxInfo"]["gatewayId"] == GW
        assert doc["rxInfo"]["metadata"] == {"buffered": "true", "hold_ms": "5000"}
        await close(handle)

    try:
        run(scenario())
    finally:
        sub.close()


def test_send_failures_are_reported_later_not_inside_send(broker: MosquittoBroker) -> None:
    async def scenario() -> None:
        link = MqttLink(settings(broker.url), TOPICS, on_command=lambda n, p: None)
        sink = MqttUplinkSink(link, TOPICS)
        results: list[bool] = []
        assert not sink.can_send()  # never connected
        sink.send(delivery(), results.append)
        assert results == []  # not re-entrant
        await until(lambda: results == [False], "failure report")
        sink2, handle = await connected_sink(broker.url)
        for replayed in (True, False):
            with pytest.raises(UndeliverableError):
                sink2.send(delivery(b"\xff\xff\xff", replayed=replayed), results.append)
        await asyncio.sleep(0.05)
        assert results == [False] and sink2.undecodable == 2  # refused, never reported
        await close(handle)

    run(scenario())
