"""End to end: inject socket → emulated SX1302 → driver → buffer → real Mosquitto → subscriber.

The gateway runs as a real subprocess (``python -m gateway run``), the broker is a
real Mosquitto that the test kills and restarts, and the subscriber decodes every
message with ``chirpstack_api.gw.UplinkFrame``.
"""

from __future__ import annotations

import random
import signal
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from chirpstack_api.gw import gw_pb2

from gateway.sim.inject import send_inject
from gateway.sim.local_broker import LocalBroker
from tests.support.gateway_proc import (
    GATEWAY_ID,
    GatewayProcess,
    UplinkCollector,
    wait_for,
    write_config,
)

PLAN = (868_100_000, 868_300_000, 868_500_000, 867_100_000, 867_300_000, 867_500_000,
        867_700_000, 867_900_000)

pytestmark = pytest.mark.usefixtures("mosquitto_binary")


def make_packet(i: int, rng: random.Random) -> dict[str, object]:
    """An unconfirmed data uplink from one of 25 devices, unique by (DevAddr, FCnt)."""
    dev_addr = 0x26010000 + i % 25
    phy = bytes([0x40]) + struct.pack("<IBH", dev_addr, 0, i // 25) + bytes([1])
    phy += rng.randbytes(rng.randint(1, 40)) + rng.randbytes(4)
    return {"phy_payload": phy.hex(), "frequency": rng.choice(PLAN), "sf": rng.randint(7, 12),
            "bw": 125_000, "cr": "4/5", "rssi": rng.randint(-120, -30),
            "snr": round(rng.uniform(-15, 12) * 4) / 4}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    b = LocalBroker(tmp_path / "broker", persistent=True)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def gateway(tmp_path: Path, broker: LocalBroker) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(write_config(tmp_path, broker.port))
    gw.start()
    yield gw
    gw.kill()


def inject_all(gw: GatewayProcess, packets: list[dict[str, object]]) -> None:
    for p in packets:
        send_inject(gw.inject_socket, p)


def check_fields(frames: list[gw_pb2.UplinkFrame], sent: dict[bytes, dict[str, object]]) -> None:
    for f in frames:
        want = sent[f.phy_payload]
        assert f.tx_info.frequency == want["frequency"]
        assert f.tx_info.modulation.lora.spreading_factor == want["sf"]
        assert f.tx_info.modulation.lora.bandwidth == 125_000
        assert f.tx_info.modulation.lora.code_rate == gw_pb2.CodeRate.CR_4_5
        assert f.rx_info.rssi == want["rssi"]
        assert f.rx_info.snr == pytest.approx(want["snr"], abs=0.25)
        assert f.rx_info.gateway_id == GATEWAY_ID
        assert f.rx_info.crc_status == gw_pb2.CRCStatus.CRC_OK
        assert len(f.rx_info.context) >= 4


def test_1000_frames_survive_a_broker_kill(gateway: GatewayProcess, broker: LocalBroker) -> None:
    rng = random.Random(2)
    packets = [make_packet(i, rng) for i in range(1000)]
    sent = {bytes.fromhex(str(p["phy_payload"])): p for p in packets}
    collector = UplinkCollector(broker.port)
    try:
        inject_all(gateway, packets[:500])
        wait_for(lambda: len(collector.unique_payloads()) >= 500, 60, "first 500 uplinks")
        first = collector.snapshot()
        check_fields(first, sent)
        assert len({f.rx_info.uplink_id for f in first}) == len(first)

        broker.kill()
        inject_all(gateway, packets[500:])
        wait_for(lambda: "backhaul_down" in gateway.log(), 30, "the backhaul_down line")
        broker.start()
        wait_for(lambda: len(collector.unique_payloads()) >= 1000, 90, "all 1000 uplinks")
        frames = collector.snapshot()
        assert collector.unique_payloads() == set(sent)
        check_fields(frames, sent)
        duplicates = len(frames) - len(sent)
        print(f"delivered {len(sent)} unique uplinks, {duplicates} QoS 1 duplicates")
    finally:
        collector.close()
    assert gateway.alive()
    up_lines = [line for line in gateway.log().splitlines() if "event=backhaul_up" in line]
    assert len(up_lines) == 1 and "outage_s=" in up_lines[0] and "backlog=" in up_lines[0]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_during_traffic_loses_nothing(
    tmp_path: Path, broker: LocalBroker, gateway: GatewayProcess, sig: signal.Signals
) -> None:
    rng = random.Random(3)
    packets = [make_packet(i, rng) for i in range(400)]
    collector = UplinkCollector(broker.port)
    try:
        broker.kill()  # nothing can be delivered: everything must be kept through the stop
        inject_all(gateway, packets)
        wait_for(lambda: "radio" in gateway.log(), 5, "gateway running")
        assert gateway.signal(sig) == 0
        broker.start()
        gateway.start()
        want = {bytes.fromhex(str(p["phy_payload"])) for p in packets}
        wait_for(lambda: collector.unique_payloads() >= want, 60, "delivery after restart")
    finally:
        collector.close()


@pytest.mark.parametrize("fault", ["truncate_record", "corrupt_record"])
def test_damaged_rx_record_gives_one_log_line_and_no_crash(
    broker: LocalBroker, gateway: GatewayProcess, fault: str
) -> None:
    rng = random.Random(4)
    bad, good = make_packet(1, rng), make_packet(2, rng)
    collector = UplinkCollector(broker.port)
    try:
        send_inject(gateway.inject_socket, {**bad, "fault": fault})
        # A damaged record costs the whole batch fetched with it (as in the reference
        # driver), so the good frame goes on the air after the driver has seen the bad one.
        wait_for(lambda: "rx_record_dropped" in gateway.log(), 30, "the drop log line")
        send_inject(gateway.inject_socket, good)
        wait_for(lambda: bytes.fromhex(str(good["phy_payload"])) in collector.unique_payloads(),
                 30, "the good frame after the damaged one")
        assert bytes.fromhex(str(bad["phy_payload"])) not in collector.unique_payloads()
    finally:
        collector.close()
    assert gateway.alive()
    assert gateway.log().count("rx_record_dropped") == 1


def test_garbage_datagram_gives_one_log_line_and_no_crash(
    broker: LocalBroker, gateway: GatewayProcess
) -> None:
    good = make_packet(3, random.Random(5))
    collector = UplinkCollector(broker.port)
    try:
        send_inject(gateway.inject_socket, b"\x00\xffnot json at all")
        send_inject(gateway.inject_socket, good)
        wait_for(lambda: bytes.fromhex(str(good["phy_payload"])) in collector.unique_payloads(),
                 30, "the good frame after the garbage")
    finally:
        collector.close()
    assert gateway.alive()
    lines = [line for line in gateway.log().splitlines() if "inject_rejected" in line]
    assert len(lines) == 1 and "reason=not_json" in lines[0]


def test_status_command_talks_to_the_running_gateway(
    broker: LocalBroker, gateway: GatewayProcess
) -> None:
    import json
    import subprocess
    import sys

    rng = random.Random(6)
    collector = UplinkCollector(broker.port)
    try:
        packet = make_packet(7, rng)
        send_inject(gateway.inject_socket, packet)
        wait_for(lambda: len(collector.unique_payloads()) == 1, 30, "one uplink")
    finally:
        collector.close()
    socket_path = gateway.config.parent / "status.sock"
    result = subprocess.run([sys.executable, "-m", "gateway", "status", "--json",
                             "--socket", str(socket_path)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    status = status.get("status", status)
    assert status["gateway_id"] == "0016c001ff10a235"
    assert status["backhaul"]["state"] == "up"
    assert status["concentrator"]["received"] == 1
    assert status["last_uplink"]["frequency"] == packet["frequency"]
    assert status["buffer"]["depth"] == 0
    assert "event=concentrator_started" in gateway.log()  # the maintainer's start line
    text = subprocess.run([sys.executable, "-m", "gateway", "status", "--socket",
                           str(socket_path)], capture_output=True, text=True, timeout=30)
    assert text.returncode == 0, text.stderr
    uplink = next(line for line in text.stdout.splitlines() if line.startswith("last uplink"))
    assert "never" not in uplink and f"frequency={packet['frequency']}" in uplink
    assert "1 received, 1 forwarded" in text.stdout
    assert "duty cycle" in text.stdout  # EU868: the sub-band budget in use
