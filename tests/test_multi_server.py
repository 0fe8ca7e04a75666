"""Several network servers through the real daemon: routing, isolation, shared downlinks.

Two real Mosquitto brokers (server ``default`` from ``[mqtt]`` and a ``[[server]]``
named ``city``) and the Semtech UDP stand-in written from PROTOCOL.TXT (server
``operator``), with the emulated chip. The filters split the devices:

* ``default``  — 26011000/20 (device A)
* ``city``     — 26012000/20 (device B)
* ``operator`` — 26012000/19 (devices B and C)
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from gateway.config import Config, load_config
from gateway.daemon import Daemon
from gateway.sim.local_broker import LocalBroker, find_mosquitto
from hal.types import COUNTER_MODULO
from packet_forwarder.downlink.status import TxStatus
from tests.support.gateway_proc import (
    NetworkServerStandIn,
    UplinkCollector,
    downlink_frame,
    write_config,
)
from tests.support.inprocess import emulator
from tests.support.semtech_ns import StandInServer, start_server

pytestmark = pytest.mark.skipif(find_mosquitto() is None, reason="needs mosquitto")

DEV_A, DEV_B, DEV_C = 0x26011001, 0x26012001, 0x26013001
_fcnt = itertools.count(1)
_tokens = itertools.count(100)


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[tuple[LocalBroker, LocalBroker]]:
    # A saves its sessions on every change, so they survive a SIGKILL and the stand-in
    # subscriber cannot miss the drain
    a = LocalBroker(tmp_path / "broker-a", persistent=True)
    b = LocalBroker(tmp_path / "broker-b")
    a.start()
    b.start()
    yield a, b
    a.stop()
    b.stop()


def make_config(tmp_path: Path, a: LocalBroker, b: LocalBroker, udp_port: int) -> Config:
    path = write_config(tmp_path, a.port, mqtt='dev_addr_prefixes = ["26011000/20"]')
    path.write_text(path.read_text() + f'''
[[server]]
name = "city"
protocol = "chirpstack_mqtt"
url = "mqtt://127.0.0.1:{b.port}"
topic_prefix = "eu868"
keepalive_s = 5
stats_interval_s = 1
dev_addr_prefixes = ["26012000/20"]

[[server]]
name = "operator"
protocol = "semtech_udp"
url = "udp://localhost:{udp_port}"
keepalive_s = 1
stats_interval_s = 1
dev_addr_prefixes = ["26012000/19"]
''')
    return load_config(path)


def phy(dev_addr: int) -> bytes:
    return (b"\x40" + struct.pack("<IBH", dev_addr, 0, next(_fcnt) & 0xFFFF) + b"\x01"
            + bytes(4))


def dev_of(payload: bytes) -> int:
    return int(struct.unpack_from("<I", payload, 1)[0])


def fcnt_of(payload: bytes) -> int:
    return int(struct.unpack_from("<H", payload, 6)[0])


async def until(cond: Callable[[], bool], what: str, tries: int = 2000) -> None:
    for _ in range(tries):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


@asynccontextmanager
async def running(config: Config, ns_a: NetworkServerStandIn, ns_b: NetworkServerStandIn,
                  udp: StandInServer) -> AsyncIterator[Daemon]:
    daemon = Daemon(config)
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.to_thread(ns_a.wait_online)
        await asyncio.to_thread(ns_b.wait_online)
        await until(lambda: daemon.snapshot()["servers"]["operator"]["state"] == "up",
                    "UDP server up")
        yield daemon
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 30)


def inject(daemon: Daemon, payload: bytes) -> None:
    emulator(daemon).inject(payload, frequency_hz=868_100_000, sf=7, bw_hz=125_000,
                           rssi_dbm=-60, snr_db=7.0)


def mqtt_frames(ns: NetworkServerStandIn) -> list[bytes]:
    with ns._lock:
        return [u.phy_payload for u in ns.uplinks]


def udp_frames(udp: StandInServer) -> list[bytes]:
    return [base64.b64decode(r["data"]) for r in udp.rxpks()]


def run(scenario: Callable[[NetworkServerStandIn, NetworkServerStandIn, StandInServer],
                           object],
        tmp_path: Path, brokers: tuple[LocalBroker, LocalBroker]) -> None:
    async def main() -> None:
        udp = await start_server()
        ns_a = NetworkServerStandIn(brokers[0].port)
        ns_b = NetworkServerStandIn(brokers[1].port)
        try:
            config = make_config(tmp_path, brokers[0], brokers[1], udp.port)
            async with running(config, ns_a, ns_b, udp) as daemon:
                await scenario(daemon, ns_a, ns_b, udp)  # type: ignore[call-arg, misc]
        finally:
            udp.close()
            for ns in (ns_a, ns_b):
                ns.client.loop_stop()
                ns.client.disconnect()

    asyncio.run(main())


def test_filters_split_the_devices_and_status_lists_every_server(
        tmp_path: Path, brokers: tuple[LocalBroker, LocalBroker]) -> None:
    async def scenario(daemon: Daemon, ns_a: NetworkServerStandIn, ns_b: NetworkServerStandIn,
                       udp: StandInServer) -> None:
        sent = [phy(dev) for _ in range(5) for dev in (DEV_A, DEV_B, DEV_C)]
        for p in sent:
            inject(daemon, p)
            await asyncio.sleep(0.02)
        await until(lambda: len(udp_frames(udp)) >= 10 and len(mqtt_frames(ns_a)) >= 5
                    and len(mqtt_frames(ns_b)) >= 5, "all frames delivered")
        await asyncio.sleep(0.3)  # anything misrouted would have arrived by now too
        assert mqtt_frames(ns_a) == [p for p in sent if dev_of(p) == DEV_A]
        assert mqtt_frames(ns_b) == [p for p in sent if dev_of(p) == DEV_B]
        assert sorted(set(udp_frames(udp))) == sorted(p for p in sent if dev_of(p) != DEV_A)
        servers = daemon.snapshot()["servers"]
        assert set(servers) == {"default", "city", "operator"}
        assert {n: s["state"] for n, s in servers.items()} == {
            "default": "up", "city": "up", "operator": "up"}
        assert all(s["backlog"] == 0 for s in servers.values())
        # stats per server, each counting that server's frames
        await until(lambda: any(m.rx_packets_received == 5 for m in ns_b.stats),
                    "city stats with its 5 frames")
        assert all(m.metadata["server"] == "city" for m in ns_b.stats)
        await until(lambda: any(p.body.get("stat", {}).get("rxnb") == 10 for p in udp.pushes),
                    "operator stat with its 10 frames")
        stat = next(p.body["stat"] for p in udp.pushes if p.body.get("stat", {}).get("rxnb"))
        assert stat["rxfw"] == 10 and stat["ackr"] > 0

    run(scenario, tmp_path, brokers)


def test_one_broker_down_the_others_keep_live_frames_and_it_gets_its_backlog(
        tmp_path: Path, brokers: tuple[LocalBroker, LocalBroker]) -> None:
    async def scenario(daemon: Daemon, ns_a: NetworkServerStandIn, ns_b: NetworkServerStandIn,
                       udp: StandInServer) -> None:
        with capture_logs(processors=[merge_contextvars]) as logs:
            await outage(daemon, ns_a, ns_b)
        # journal field SERVER: the default link's lines name the server that went down
        lines = [e for e in logs if e["event"] in ("mqtt_disconnected", "mqtt_connected")]
        assert lines and all(e.get("server") == "default" for e in lines), lines[:3]

    async def outage(daemon: Daemon, ns_a: NetworkServerStandIn,
                     ns_b: NetworkServerStandIn) -> None:
        collector = await asyncio.to_thread(UplinkCollector, brokers[0].port)
        try:
            await outage_with(daemon, ns_b, collector)
        finally:
            collector.close()

    async def outage_with(daemon: Daemon, ns_b: NetworkServerStandIn,
                          collector: UplinkCollector) -> None:
        brokers[0].kill()  # the line or the broker host dies: no goodbye on the socket
        await until(lambda: daemon.snapshot()["servers"]["default"]["state"] == "down",
                    "default down")
        sent = []
        for i in range(20):
            p = phy((DEV_A, DEV_B)[i % 2] + (i % 4 >= 2))  # two devices per server
            sent.append(p)
            inject(daemon, p)
            await asyncio.sleep(0.02)
        for_b = [p for p in sent if dev_of(p) in (DEV_B, DEV_B + 1)]
        await until(lambda: mqtt_frames(ns_b) == for_b, "city keeps getting live frames")
        assert daemon.snapshot()["servers"]["default"]["backlog"] == 10
        brokers[0].restart()
        for_a = [p for p in sent if dev_of(p) in (DEV_A, DEV_A + 1)]
        def got_a() -> list[bytes]:
            return [f.phy_payload for f in collector.snapshot()]

        await until(lambda: len(got_a()) >= len(for_a), "default drained")
        await asyncio.sleep(0.3)  # a duplicate would have arrived by now too
        got = got_a()
        assert sorted(got) == sorted(for_a)  # no loss, no duplicate
        for dev in (DEV_A, DEV_A + 1):  # per-device order kept
            assert [p for p in got if dev_of(p) == dev] == [p for p in for_a if dev_of(p) == dev]
        assert mqtt_frames(ns_b) == for_b  # nothing repeated for the other server

    run(scenario, tmp_path, brokers)


def counter_delta(later: int, earlier: int) -> int:
    return (later - earlier + COUNTER_MODULO // 2) % COUNTER_MODULO - COUNTER_MODULO // 2


def test_udp_downlink_at_tmst_and_a_second_server_for_the_same_instant_collides(
        tmp_path: Path, brokers: tuple[LocalBroker, LocalBroker]) -> None:
    async def scenario(daemon: Daemon, ns_a: NetworkServerStandIn, ns_b: NetworkServerStandIn,
                       udp: StandInServer) -> None:
        up = phy(DEV_B)  # routed to both city (MQTT) and operator (UDP)
        inject(daemon, up)
        await until(lambda: up in udp_frames(udp) and up in mqtt_frames(ns_b), "uplink")
        rxpk = next(r for r in udp.rxpks() if base64.b64decode(r["data"]) == up)
        tmst = (rxpk["tmst"] + 1_000_000) & 0xFFFFFFFF
        answer = b"\x60" + b"udp-rx1-answer"
        token = next(_tokens)
        udp.pull_resp({"tmst": tmst, "freq": 868.1, "rfch": 0, "powe": 14, "modu": "LORA",
                       "datr": "SF7BW125", "codr": "4/5", "ipol": True, "size": len(answer),
                       "data": base64.b64encode(answer).decode()}, token)
        assert await udp.tx_ack(token) == {"txpk_ack": {"error": "NONE"}}
        # the city server asks for the same instant: refused as a collision, on its own broker
        with ns_b._lock:
            context = next(u for u in ns_b.uplinks if u.phy_payload == up).rx_info.context
        frame = downlink_frame(4242, {"payload": b"\x60" + b"mqtt-rx1", "frequency": 868_100_000,
                                      "sf": 7, "delay_us": 1_000_000, "context": context})
        await asyncio.to_thread(ns_b.command, "down", frame.SerializeToString())
        ack = await asyncio.to_thread(ns_b.wait_ack, 4242)
        assert [TxStatus(i.status) for i in ack.items] == [TxStatus.COLLISION_PACKET]
        assert ns_a.ack_for(4242) is None  # the ack went to the server that asked
        tx_log = emulator(daemon).tx_log
        await until(lambda: any(e.payload == answer for e in tx_log), "transmitted")
        entry = next(e for e in tx_log if e.payload == answer)
        assert abs(counter_delta(entry.start_count_us, tmst)) <= 1000
        assert not any(e.payload == b"\x60" + b"mqtt-rx1" for e in tx_log)
        # out of range: answered with the matching error
        token = next(_tokens)
        udp.pull_resp({"tmst": (tmst + 2_000_000) & 0xFFFFFFFF, "freq": 915.0, "powe": 14,
                       "modu": "LORA", "datr": "SF7BW125", "codr": "4/5",
                       "data": base64.b64encode(answer).decode()}, token)
        assert await udp.tx_ack(token) == {"txpk_ack": {"error": "TX_FREQ"}}

    run(scenario, tmp_path, brokers)
