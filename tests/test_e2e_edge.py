"""End to end with the emulator: the edge checks drop forged, replayed and foreign frames.

Keys are imported the way an operator does it (``lora-gateway keys import``), the
gateway runs as a subprocess, and the drops must show up in ``event/stats``.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from chirpstack_api.gw import gw_pb2

from gateway.sim.inject import send_inject
from gateway.sim.local_broker import LocalBroker
from packet_forwarder.lorawan.encode import DataFields, SessionKeys10, build_data_uplink_10
from tests.support.broker import Subscriber
from tests.support.gateway_proc import GatewayProcess, UplinkCollector, wait_for, write_config

pytestmark = pytest.mark.usefixtures("mosquitto_binary")

DEVICES = {  # dev_addr: NwkSKey (1.0.x, so the three network keys are equal)
    "26011f2a": "2b7e151628aed2a6abf7158809cf4f3c",
    "26011f2b": "000102030405060708090a0b0c0d0e0f",
}
APP_S_KEY = bytes(range(16, 32))


def frame(dev_addr: str, fcnt: int, key_hex: str | None = None) -> bytes:
    keys = SessionKeys10(nwk_s_key=bytes.fromhex(key_hex or DEVICES[dev_addr]),
                         app_s_key=APP_S_KEY)
    fields = DataFields(dev_addr=bytes.fromhex(dev_addr), fcnt=fcnt, fport=1,
                        payload=b"meter %d" % fcnt)
    return build_data_uplink_10(fields, keys)


def air(phy: bytes) -> dict[str, object]:
    return {"phy_payload": phy.hex(), "frequency": 868_100_000, "sf": 7, "rssi": -70,
            "snr": 7.0}


def import_keys(tmp_path: Path) -> None:
    path = tmp_path / "devices.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["dev_eui", "dev_addr", "mac_version", "nwk_s_enc_key",
                         "s_nwk_s_int_key", "f_nwk_s_int_key"])
        for i, (addr, key) in enumerate(DEVICES.items()):
            writer.writerow([f"70b3d57ed000000{i}", addr, "1.0.3", key, key, key])
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "keys", "import", str(path),
         "--store", str(tmp_path / "keys.sqlite"), "--key-file", str(tmp_path / "master.key")],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    b = LocalBroker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


def test_known_frames_pass_forged_replayed_and_foreign_are_dropped_and_counted(
    tmp_path: Path, broker: LocalBroker
) -> None:
    import_keys(tmp_path)
    config = write_config(tmp_path, broker.port, edge='unknown_devaddr = "drop"')
    gw = GatewayProcess(config)
    uplinks = UplinkCollector(broker.port)
    stats = Subscriber(broker.port, "eu868/gateway/+/event/stats")
    gw.start()
    try:
        genuine = [frame(addr, n) for n in range(10) for addr in DEVICES]
        for phy in genuine:
            send_inject(gw.inject_socket, air(phy))
        wait_for(lambda: uplinks.unique_payloads() == set(genuine), 30, "genuine uplinks")

        forged = frame("26011f2a", 10, key_hex="ff" * 16)  # right DevAddr, wrong key
        replayed = genuine[6]  # fcnt 3 of 26011f2a, long after fcnt 9
        foreign = frame("01020304", 1, key_hex="11" * 16)
        for phy in (forged, replayed, foreign):
            send_inject(gw.inject_socket, air(phy))
        last = frame("26011f2b", 10)  # a genuine frame after them: the bad ones are behind us
        send_inject(gw.inject_socket, air(last))
        wait_for(lambda: last in uplinks.unique_payloads(), 30, "the last genuine uplink")

        def drops() -> dict[str, str]:
            for received in reversed(stats.snapshot()):
                msg = gw_pb2.GatewayStats()
                msg.ParseFromString(received.payload)
                if "drop_edge_bad_mic" in msg.metadata:
                    return dict(msg.metadata)
            return {}

        wait_for(lambda: bool(drops()), 30, "stats with edge drops")
        counted = drops()
        assert counted["drop_edge_bad_mic"] == "1"
        assert counted["drop_edge_replay"] == "1"
        assert counted["drop_edge_unknown_devaddr"] == "1"
        assert not {forged, foreign} & uplinks.unique_payloads()
        # The replayed bytes arrived once, as the original: one uplink id only.
        ids = {f.rx_info.uplink_id for f in uplinks.snapshot() if f.phy_payload == replayed}
        assert len(ids) == 1
        assert "edge_drop" in gw.log()
    finally:
        uplinks.close()
        stats.close()
        gw.kill()
