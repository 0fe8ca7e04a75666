"""KR920 downlinks through the real daemon with LBT on the emulated SX1261 (real Mosquitto).

A channel the SX1261 hears above −65 dBm gets no transmission and a follow-up
ack with COLLISION_PACKET (the protocol has no LBT status of its own); a free
channel transmits. Without ``[concentrator.lbt]`` the same busy channel is
transmitted on (issue 12: LBT is a board/config feature, not a refusal).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from chirpstack_api.gw import gw_pb2

from gateway.config import load_config
from gateway.sim.local_broker import LocalBroker
from packet_forwarder.downlink.status import TxStatus
from tests.support.gateway_proc import NetworkServerStandIn, downlink_frame, write_config
from tests.support.inprocess import broker, emulator, running, send  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("mosquitto_binary")

BUSY_HZ, FREE_HZ = 922_100_000, 922_300_000
KR920 = {"concentrator": 'region = "KR920"',
         "concentrator__emulator": f"noise_floor_dbm = -105.0\n"
                                   f"busy_channels = [{{frequency_hz = {BUSY_HZ}, "
                                   f"rssi_dbm = -50.0}}]"}


def _wait_status(ns: NetworkServerStandIn, downlink_id: int, status: TxStatus,
                 timeout_s: float = 10.0) -> gw_pb2.DownlinkTxAck:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for ack in list(ns.acks):
            if ack.downlink_id == downlink_id and [i.status for i in ack.items] == [status]:
                return ack
        time.sleep(0.01)
    raise TimeoutError(f"no {status.name} ack for downlink {downlink_id}")


def test_kr920_busy_channel_is_refused_and_a_free_one_transmits(tmp_path: Path,
                                                                broker: LocalBroker) -> None:
    config = load_config(write_config(tmp_path, broker.port, concentrator__lbt="enabled = true",
                                      **KR920))

    async def scenario() -> None:
        ns = NetworkServerStandIn(broker.port)
        try:
            async with running(config, ns) as daemon:
                busy = downlink_frame(1, {"payload": b"\x60busy", "frequency": BUSY_HZ,
                                          "power": 10})
                assert await send(ns, busy) == [TxStatus.OK]  # queued; LBT decides at TX time
                await asyncio.to_thread(_wait_status, ns, 1, TxStatus.COLLISION_PACKET)
                free = downlink_frame(2, {"payload": b"\x60free", "frequency": FREE_HZ,
                                          "power": 10})
                assert await send(ns, free) == [TxStatus.OK]
                for _ in range(500):
                    if any(e.payload == b"\x60free" for e in emulator(daemon).tx_log):
                        break
                    await asyncio.sleep(0.01)
                sent = [e.payload for e in emulator(daemon).tx_log]
                assert sent == [b"\x60free"]
                sx1261 = emulator(daemon).sx1261
                assert sx1261 is not None
                assert [s.nb_scan for s in sx1261.lbt_log] == [715, 715]  # 5 ms, KR920's rule
                assert daemon.downlink is not None
                assert daemon.downlink.handler.counters.dropped["lbt_busy"] == 1
        finally:
            ns.close()

    asyncio.run(scenario())


def test_kr920_without_lbt_sends_on_the_busy_channel(tmp_path: Path,
                                                     broker: LocalBroker) -> None:
    config = load_config(write_config(tmp_path, broker.port, **KR920))

    async def scenario() -> None:
        ns = NetworkServerStandIn(broker.port)
        try:
            async with running(config, ns) as daemon:
                frame = downlink_frame(3, {"payload": b"\x60unchecked", "frequency": BUSY_HZ,
                                           "power": 10})
                assert await send(ns, frame) == [TxStatus.OK]
                for _ in range(500):
                    if emulator(daemon).tx_log:
                        break
                    await asyncio.sleep(0.01)
                assert [e.payload for e in emulator(daemon).tx_log] == [b"\x60unchecked"]
        finally:
            ns.close()

    asyncio.run(scenario())
