"""SX1303 fine timestamps through the real daemon: ``rx_info.fine_time_since_gps_epoch``.

The emulated chip is an SX1303, its GPS receiver gives lock and a PPS per second
of the chip's clock; the reference computes fine times only once it has seen 16
PPS edges, so this runs for about 17 s (slow).
"""

from __future__ import annotations

import asyncio
import struct
import time
from pathlib import Path

import pytest
from chirpstack_api.gw import gw_pb2

from gateway.config import load_config
from gateway.sim.local_broker import LocalBroker
from tests.support.gateway_proc import NetworkServerStandIn, write_config
from tests.support.inprocess import (
    broker,  # noqa: F401  (fixture)
    emulator,
    running,
)

START_S = 1_400_000_000
"""GPS seconds at the emulated receiver's start."""


@pytest.mark.slow
@pytest.mark.usefixtures("mosquitto_binary")
def test_uplinks_carry_the_gps_fine_time_once_locked(tmp_path: Path,
                                                     broker: LocalBroker) -> None:
    config = load_config(write_config(tmp_path, broker.port,
                                      concentrator__emulator='model = "SX1303"',
                                      class_b=f"emulator_start_gps_s = {START_S}"))

    async def scenario() -> None:
        ns = NetworkServerStandIn(broker.port)
        try:
            async with running(config, ns) as daemon:
                emu = emulator(daemon)
                first = await _uplink(emu, ns, 0)
                assert not first.rx_info.HasField("fine_time_since_gps_epoch")  # no history yet
                deadline = time.monotonic() + 40
                n = 1
                while time.monotonic() < deadline:
                    await asyncio.sleep(1.0)
                    up = await _uplink(emu, ns, n)
                    n += 1
                    if up.rx_info.HasField("fine_time_since_gps_epoch"):
                        break
                else:
                    raise AssertionError("no fine time after 40 s of PPS")
                fine_ns = up.rx_info.fine_time_since_gps_epoch.ToNanoseconds()
                seconds, ns_part = divmod(fine_ns, 1_000_000_000)
                assert START_S < seconds < START_S + 60
                assert abs(ns_part - emu.fine.true_fine_ns[-1]) < 100  # within 3 ticks
                cb = daemon.downlink.class_b if daemon.downlink else None
                assert cb is not None and cb.locked
                ctx_end_gps_ns = cb.reader.clock.count_to_gps_ns(_count_us(up))
                # the fine time marks the end of the preamble, before the end of the frame
                assert 0 < ctx_end_gps_ns - fine_ns < 200_000_000
        finally:
            ns.close()

    asyncio.run(scenario())


async def _uplink(emu: object, ns: NetworkServerStandIn, n: int) -> gw_pb2.UplinkFrame:
    from hal.emulator.chip import Sx1302Emulator

    assert isinstance(emu, Sx1302Emulator)
    phy = bytes([0x40]) + struct.pack("<IBH", 0x26011234, 0, 7000 + n) + b"\x01\xaa" + bytes(4)
    emu.inject(phy, frequency_hz=868_100_000, sf=7, bw_hz=125_000, rssi_dbm=-70, snr_db=8.0)
    return await asyncio.to_thread(ns.wait_uplink, phy)


def _count_us(up: gw_pb2.UplinkFrame) -> int:
    from packet_forwarder.chirpstack import parse_context

    ctx = parse_context(up.rx_info.context)
    assert ctx is not None
    return ctx.count_us
