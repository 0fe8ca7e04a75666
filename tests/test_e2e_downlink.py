"""End to end, as deployed: ``lora-gateway run`` as a subprocess, a real Mosquitto, and a
network-server stand-in answering uplinks on ``command/down``.

The emulated chip lives in the child process, so what it put on the air is read
from the ``tx_started source=emulator`` log line the daemon writes from the
emulator's TX log (the timestamp and frequency decoded back from the registers).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator

import pytest
from chirpstack_api.gw import gw_pb2

from gateway.sim.inject import send_inject
from gateway.sim.local_broker import LocalBroker
from hal.types import COUNTER_MODULO
from packet_forwarder.chirpstack import JSON, make_context, marshal, parse_context
from packet_forwarder.downlink.status import TxStatus
from tests.support.gateway_proc import (
    GATEWAY_ID,
    GatewayProcess,
    NetworkServerStandIn,
    downlink_frame,
    wait_for,
    write_config,
)
from tests.test_e2e_uplink import make_packet

pytestmark = pytest.mark.usefixtures("mosquitto_binary")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[GatewayProcess, NetworkServerStandIn]]:
    tmp = tmp_path_factory.mktemp("downlink")
    broker = LocalBroker(tmp / "broker")
    broker.start()
    gw = GatewayProcess(write_config(tmp, broker.port))
    ns = NetworkServerStandIn(broker.port)
    try:
        gw.start()
        ns.wait_online()
        yield gw, ns
    finally:
        ns.close()
        gw.kill()
        broker.stop()


def uplink(gw: GatewayProcess, ns: NetworkServerStandIn, seed: int) -> gw_pb2.UplinkFrame:
    packet = {**make_packet(seed, random.Random(seed)), "frequency": 868_100_000, "sf": 7}
    send_inject(gw.inject_socket, packet)
    return ns.wait_uplink(bytes.fromhex(str(packet["phy_payload"])))


def tx_started(gw: GatewayProcess, count: int) -> list[dict[str, str]]:
    """The emulator's TX lines, once ``count`` of them have been written."""
    def lines() -> list[dict[str, str]]:
        return [dict(re.findall(r"(\w+)=(\S+)", line)) for line in gw.log().splitlines()
                if "event=tx_started" in line]

    wait_for(lambda: len(lines()) >= count, 10, f"{count} tx_started lines")
    return lines()


def statuses(ack: gw_pb2.DownlinkTxAck) -> list[TxStatus]:
    return [TxStatus(i.status) for i in ack.items]


def test_answer_to_an_uplink_leaves_one_second_later(
        setup: tuple[GatewayProcess, NetworkServerStandIn]) -> None:
    gw, ns = setup
    before = len(tx_started(gw, 0))
    up = uplink(gw, ns, 1)
    ctx = parse_context(up.rx_info.context)
    assert ctx is not None
    ns.command("down", downlink_frame(101, {"frequency": 868_100_000, "sf": 7,
                                            "delay_us": 1_000_000,
                                            "context": up.rx_info.context}).SerializeToString())
    assert statuses(ns.wait_ack(101)) == [TxStatus.OK]
    line = tx_started(gw, before + 1)[before]
    late_us = (int(line["count_us"]) - ctx.count_us) % COUNTER_MODULO - 1_000_000
    assert abs(late_us) <= 1000
    assert abs(int(line["frequency"]) - 868_100_000) < 100 and line["sf"] == "7"


def test_stale_context_and_too_much_power_are_refused(
        setup: tuple[GatewayProcess, NetworkServerStandIn]) -> None:
    gw, ns = setup
    up = uplink(gw, ns, 2)
    ctx = parse_context(up.rx_info.context)
    assert ctx is not None
    stale = make_context(ctx.count_us, ctx.session_id ^ 0xFFFF, ctx.wraps)
    item = {"frequency": 868_100_000, "sf": 7, "delay_us": 1_000_000}
    ns.command("down", downlink_frame(102, {**item, "context": stale}).SerializeToString())
    ns.command("down", downlink_frame(103, {**item, "context": up.rx_info.context,
                                            "power": 27}).SerializeToString())
    assert statuses(ns.wait_ack(102)) == [TxStatus.TOO_LATE]
    assert statuses(ns.wait_ack(103)) == [TxStatus.TX_POWER]
    assert gw.alive()


def test_malformed_commands_give_one_line_and_an_ack_when_addressable(
        setup: tuple[GatewayProcess, NetworkServerStandIn]) -> None:
    gw, ns = setup
    broken_proto = bytes([0x18, 104]) + bytes([0x2A, 0x05, 0x01])  # downlink_id=104, cut item
    broken_json = marshal(gw_pb2.DownlinkFrame(downlink_id=105, gateway_id=GATEWAY_ID), JSON)
    # a known field of the wrong type (unknown fields are ignored, as ChirpStack's readers do)
    broken_json = broken_json.replace(b"}", b', "items": [{"phyPayload": 12}]}')
    ns.command("down", broken_proto)
    ns.command("down", broken_json)
    ns.command("down", b"\xff\xfe\xfd")                   # nothing readable: no ack
    ns.command("config", b"\x0a\xff\xff")                 # config garbage: refused, plan kept
    assert statuses(ns.wait_ack(104)) == [TxStatus.INTERNAL_ERROR]
    assert statuses(ns.wait_ack(105)) == [TxStatus.INTERNAL_ERROR]
    wait_for(lambda: "event=config_refused" in gw.log(), 10, "the config_refused line")
    # The process goes on: a good downlink after the garbage is still answered.
    up = uplink(gw, ns, 3)
    ns.command("down", downlink_frame(106, {"frequency": 868_100_000, "sf": 7,
                                            "delay_us": 1_000_000,
                                            "context": up.rx_info.context}).SerializeToString())
    assert statuses(ns.wait_ack(106)) == [TxStatus.OK]
    assert gw.alive()
    log = gw.log()
    assert log.count("undecodable") == 3
    assert log.count("event=config_refused") == 1
    assert "Traceback" not in log
    assert ns.ack_for(0) is None


def test_stats_carry_the_tx_counters(setup: tuple[GatewayProcess, NetworkServerStandIn]) -> None:
    gw, ns = setup
    wait_for(lambda: any(s.tx_packets_received > 0 for s in ns.stats), 12, "stats with TX")
    stats = [s for s in ns.stats if s.tx_packets_received > 0][-1]
    assert stats.tx_packets_per_status["OK"] >= 1
    assert any(b.name == "868.0-868.6" for b in stats.duty_cycle_stats.bands)
    assert gw.alive()
