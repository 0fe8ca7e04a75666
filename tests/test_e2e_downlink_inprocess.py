"""Downlinks through the real daemon, run inside the test's event loop with the emulated chip.

The broker is a real Mosquitto and the network server a real MQTT client; the
daemon is the production ``Daemon``, so the only difference from the subprocess
tests is that the emulator's TX log (what the chip decoded from its registers
and put on the air) can be read directly.
"""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest
import structlog

from gateway.config import Config
from gateway.sim.local_broker import LocalBroker
from hal.types import ChannelPlan
from packet_forwarder.chirpstack import make_context, parse_context
from packet_forwarder.downlink.airtime import lora_time_on_air_us
from packet_forwarder.downlink.status import TxStatus
from tests.support.gateway_proc import NetworkServerStandIn, downlink_frame
from tests.support.inprocess import (
    NEW_PLAN_HZ,
    broker,  # noqa: F401  (fixture)
    channels,
    config,  # noqa: F401  (fixture)
    configuration,
    counter_delta,
    emulator,
    running,
    send,
    transmitted,
    until,
    uplink,
)

pytestmark = pytest.mark.usefixtures("mosquitto_binary")

PLL_STEP_HZ = 32_000_000 / 2**19
"""The TX frequency register's resolution: the frequency read back is within one step."""
def test_class_a_answer_leaves_one_second_after_the_uplink(config: Config,
                                                           broker: LocalBroker) -> None:
    async def scenario() -> None:
        ns = NetworkServerStandIn(broker.port)
        try:
            async with running(config, ns) as daemon:
                up = await uplink(daemon, ns)
                ctx = parse_context(up.rx_info.context)
                assert ctx is not None
                payload = b"\x60" + b"class-a-rx1!"
                frame = downlink_frame(1, {"payload": payload, "frequency": 868_100_000, "sf": 7,
                                           "delay_us": 1_000_000,
                                           "context": up.rx_info.context})
                assert await send(ns, frame) == [TxStatus.OK]
                entry = await transmitted(daemon, payload)
                assert abs(counter_delta(entry.start_count_us, ctx.count_us) - 1_000_000) <= 1000
                assert abs(entry.frequency_hz - 868_100_000) < PLL_STEP_HZ
                assert entry.spreading_factor == 7
                assert entry.power_dbm == 14 and entry.invert_polarity
        finally:
            ns.close()

    asyncio.run(scenario())


def test_refusals_name_their_cause(config: Config, broker: LocalBroker) -> None:
    async def scenario() -> None:
        ns = NetworkServerStandIn(broker.port)
        try:
            async with running(config, ns) as daemon:
                up = await uplink(daemon, ns)
                ctx = parse_context(up.rx_info.context)
                assert ctx is not None
                good = {"frequency": 868_100_000, "sf": 7, "delay_us": 1_000_000,
                        "context": up.rx_info.context}
                stale = make_context(ctx.count_us, ctx.session_id ^ 1, ctx.wraps)
                cases = [
                    ({**good, "context": stale}, TxStatus.TOO_LATE),
                    ({**good, "frequency": 915_000_000}, TxStatus.TX_FREQ),
                    ({**good, "power": 30}, TxStatus.TX_POWER),
                ]
                for n, (item, want) in enumerate(cases):
                    assert await send(ns, downlink_frame(10 + n, item)) == [want]
                # RX1 refused, RX2 (869.525 MHz) accepted: the first acceptable item goes.
                rx2 = {**good, "frequency": 869_525_000, "sf": 12, "delay_us": 2_000_000,
                       "payload": b"\x60rx2-fallback"}
                frame = downlink_frame(20, {**good, "power": 30}, rx2)
                assert await send(ns, frame) == [TxStatus.TX_POWER, TxStatus.OK]
                entry = await transmitted(daemon, b"\x60rx2-fallback")
                assert abs(counter_delta(entry.start_count_us, ctx.count_us) - 2_000_000) <= 1000
                assert not any(e.payload != b"\x60rx2-fallback" for e in emulator(daemon).tx_log)
        finally:
            ns.close()

    asyncio.run(scenario())


def test_class_c_burst_flows_around_a_class_a_answer(config: Config,
                                                     broker: LocalBroker) -> None:
    async def scenario() -> None:
        ns = NetworkServerStandIn(broker.port)
        try:
            async with running(config, ns) as daemon:
                up = await uplink(daemon, ns)
                class_a = downlink_frame(30, {"payload": b"\x60class-a", "frequency": 868_100_000,
                                              "sf": 7, "delay_us": 1_000_000,
                                              "context": up.rx_info.context})
                bursts = [downlink_frame(31 + i, {"payload": b"\x60class-c-%d" % i, "sf": 9})
                          for i in range(6)]
                for frame in (class_a, *bursts):  # all published before any ack is read
                    await asyncio.to_thread(ns.command, "down", frame.SerializeToString())
                acks = {f.downlink_id: await asyncio.to_thread(ns.wait_ack, f.downlink_id)
                        for f in (class_a, *bursts)}
                sent = {f.items[0].phy_payload for f in (class_a, *bursts)
                        if acks[f.downlink_id].items[0].status == TxStatus.OK}
                assert b"\x60class-a" in sent and len(sent) >= 5
                entries = [await transmitted(daemon, p) for p in sent]
                spans = sorted((e.start_count_us, e.start_count_us + lora_time_on_air_us(
                    e.spreading_factor, e.bandwidth_hz, e.code_rate, len(e.payload),
                    preamble=e.preamble, crc=e.crc)) for e in entries)
                for (_s1, end1), (start2, _e2) in itertools.pairwise(spans):
                    assert counter_delta(start2, end1) > 0, "two packets overlap on air"
                assert {e.payload for e in emulator(daemon).tx_log} == sent
                assert daemon.downlink is not None
                assert daemon.downlink.handler.counters.dropped["missed_slot"] == 0
        finally:
            ns.close()

    asyncio.run(scenario())


def test_config_command_reconfigures_persists_and_refuses(config: Config,
                                                          broker: LocalBroker) -> None:
    async def scenario() -> None:
        ns = NetworkServerStandIn(broker.port)
        try:
            with structlog.testing.capture_logs() as logs:
                async with running(config, ns) as daemon:
                    assert 868_100_000 in channels(daemon)
                    old = await uplink(daemon, ns)
                    await asyncio.to_thread(ns.command, "config",
                                            configuration("v2", NEW_PLAN_HZ))
                    await until(lambda: channels(daemon) == set(NEW_PLAN_HZ))
                    await uplink(daemon, ns, frequency=866_300_000)  # heard on the new plan
                    # The restart began a new counter session: the old uplink is stale now.
                    stale = downlink_frame(40, {"frequency": 868_100_000, "sf": 7,
                                                "delay_us": 1_000_000,
                                                "context": old.rx_info.context})
                    assert await send(ns, stale) == [TxStatus.TOO_LATE]
                    await asyncio.to_thread(ns.command, "config", configuration(
                        "v3", (863_100_000, 866_500_000, 869_900_000)))
                    await asyncio.to_thread(ns.command, "config", b"\x0a\xff\xff garbage")
                    await until(lambda: sum(e["event"] == "config_refused" for e in logs) == 2)
                    assert channels(daemon) == set(NEW_PLAN_HZ)
                    assert daemon.downlink is not None
                    assert daemon.downlink.config_version == "v2"
        finally:
            ns.close()
        refused = [e for e in logs if e["event"] == "config_refused"]
        assert [e["version"] for e in refused] == ["v3", ""]
        assert "radios" in refused[0]["error"]
        kept = json.loads((config.buffer.path.parent / "channel-plan.json").read_text())
        assert kept["version"] == "v2" and kept["region"] == "EU868"

        ns = NetworkServerStandIn(broker.port)
        try:
            async with running(config, ns) as daemon:  # a restart comes up on the kept plan
                assert channels(daemon) == set(NEW_PLAN_HZ)
                assert daemon.downlink is not None
                assert daemon.downlink.config_version == "v2"
                assert isinstance(daemon.downlink.plan, ChannelPlan)
        finally:
            ns.close()

    asyncio.run(scenario())
