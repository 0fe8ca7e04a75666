"""With GPS locked, uplinks carry their GPS reception time (time_since_gps_epoch, UDP tmms)."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

from gateway.config import load_config
from gateway.sim.local_broker import LocalBroker
from packet_forwarder.chirpstack import parse_context
from tests.support.gateway_proc import NetworkServerStandIn, write_config
from tests.support.inprocess import (
    broker,  # noqa: F401  (fixture)
    emulator,
    running,
)

START_S = 1_400_000_000 - 4


def test_uplinks_carry_gps_time_once_gps_is_locked(
        tmp_path: Path, broker: LocalBroker) -> None:
    config = load_config(write_config(tmp_path, broker.port, class_b=(
        f"emulator_start_gps_s = {START_S}")))

    async def scenario() -> None:
        ns = NetworkServerStandIn(broker.port)
        try:
            async with running(config, ns) as daemon:
                assert daemon.downlink is not None and daemon.downlink.class_b is not None
                class_b = daemon.downlink.class_b
                for _ in range(250):
                    if class_b.locked:
                        break
                    await asyncio.sleep(0.02)
                assert class_b.locked
                phy = b"\x40" + struct.pack("<IBH", 0x26011234, 0, 7) + b"\x01" + bytes(4)
                emulator(daemon).inject(phy, frequency_hz=868_100_000, sf=7, bw_hz=125_000,
                                        rssi_dbm=-60, snr_db=7.0)
                up = await asyncio.to_thread(ns.wait_uplink, phy)
                assert up.rx_info.HasField("time_since_gps_epoch")
                ctx = parse_context(up.rx_info.context)
                assert ctx is not None
                expected_ns = class_b.reader.clock.count_to_gps_ns(ctx.count_us)
                got_ns = up.rx_info.time_since_gps_epoch.ToNanoseconds()
                assert abs(got_ns - expected_ns) <= 1_000  # the same instant, to the µs
                assert START_S * 10**9 <= got_ns <= (START_S + 60) * 10**9
        finally:
            ns.close()

    asyncio.run(scenario())
