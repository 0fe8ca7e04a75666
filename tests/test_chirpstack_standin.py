"""The real daemon (emulated chip, real Mosquitto) against a ChirpStack stand-in built from
ChirpStack's source (see ``tests/support/chirpstack_standin.py`` for which file each behaviour
follows).

With ChirpStack's default settings (region default EIRP, rx_window 0, RX1 delay 1 s,
join-accept delays 5/6 s) every kind of downlink must end in an OK ack on a board whose
TX power table stops at 27 dBm, in both encodings; the region's ``command/config``
reaches the gateway and is applied once; the stats carry what ChirpStack's charts
use (per-modulation counts it can map to data rates, one status per downlink).
"""

from __future__ import annotations

import asyncio
import itertools
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from chirpstack_api.gw import gw_pb2

from gateway.config import load_config
from gateway.daemon import Daemon
from tests.support.broker import MosquittoBroker
from tests.support.chirpstack_standin import (
    REGIONS,
    ChirpStackStandIn,
    RegionDefaults,
    ack_outcome,
)
from tests.support.gateway_proc import write_config
from tests.support.inprocess import emulator, transmitted

BOARD_MAX_DBM = 27
"""The emulated board's strongest TX gain table step (hardware/boards/emulator.toml)."""
FREQ_TOLERANCE_HZ = 2 * 32_000_000 / 2**19
"""What the emulator decodes from the TX frequency registers: within two register steps
(869.525 MHz reads back 98 Hz low)."""
_fcnt = itertools.count(1)


CASES = list(REGIONS)
"""KR920 included: a board without an SX1261 sends without LBT unless the config says
``[concentrator.lbt] refuse_without`` (issue 15); ChirpStack has no LBT notion."""


@asynccontextmanager
async def gateway(tmp_path: Path, broker: MosquittoBroker, region: RegionDefaults,
                  marshaler: str) -> AsyncIterator[Daemon]:
    config = load_config(write_config(
        tmp_path, broker.port, concentrator=f'region = "{region.gateway_region}"',
        mqtt=f'topic_prefix = "{region.prefix}"\nmarshaler = "{marshaler}"\n'
             'stats_interval_s = 1'))
    daemon = Daemon(config)
    task = asyncio.create_task(daemon.run())
    try:
        yield daemon
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 30)


async def uplink(daemon: Daemon, cs: ChirpStackStandIn, *,
                 join: bool = False) -> gw_pb2.UplinkFrame:
    n = next(_fcnt)
    if join:   # JoinRequest: MHDR, JoinEUI, DevEUI, DevNonce, MIC
        phy = b"\x00" + bytes(8) + struct.pack("<QH", 0x70B3D57ED0000001, n) + bytes(4)
    else:      # unconfirmed data up: MHDR, DevAddr, FCtrl, FCnt, FPort, payload, MIC
        phy = b"\x40" + struct.pack("<IBH", 0x26011234, 0, n) + b"\x01\xaa" + bytes(4)
    channel = cs.region.channels[0]
    rate = cs.region.data_rates[cs.region.uplink_dr]
    emulator(daemon).inject(phy, frequency_hz=channel.frequency_hz, sf=rate.spreading_factor,
                            bw_hz=rate.bandwidth_hz, rssi_dbm=-60, snr_db=7.0)
    return await asyncio.to_thread(cs.uplink, phy)


async def down(cs: ChirpStackStandIn, frame: gw_pb2.DownlinkFrame) -> tuple[int | None, int]:
    cs.send_downlink(frame)
    return ack_outcome(await asyncio.to_thread(cs.ack, frame.downlink_id))


async def until(predicate: object, timeout_s: float, what: str) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(what)


async def config_applied_once(daemon: Daemon, cs: ChirpStackStandIn) -> None:
    """stats.rs pushes the region's channels; the next stats report its version: no re-push."""
    wanted = cs.config_hash()
    await asyncio.to_thread(cs.wait, lambda s: any(
        st.metadata.get("config_version") == wanted for st in s.stats))
    seen = len(cs.seen.stats)
    await asyncio.to_thread(cs.wait, lambda s: len(s.stats) >= seen + 2)
    assert len(cs.seen.configs_sent) == 1
    assert daemon.downlink is not None and daemon.downlink.config_version == wanted
    got = {(c.frequency_hz, c.bandwidth_hz) for c in daemon.downlink.plan.all_channels()}
    assert got == {(c.frequency_hz, c.bandwidth_hz) for c in cs.region.channels}


async def scenario(tmp_path: Path, broker: MosquittoBroker, region: RegionDefaults,
                   marshaler: str) -> None:
    cs = ChirpStackStandIn(broker.port, region, stats_interval_secs=1)
    sent: dict[bytes, gw_pb2.DownlinkFrameItem] = {}
    ids = itertools.count(1)

    async def expect_ok(frame: gw_pb2.DownlinkFrame, want_index: int) -> None:
        index, status = await down(cs, frame)
        assert (index, status) == (want_index, gw_pb2.TxAckStatus.OK), (
            f"{frame.items[0].phy_payload!r}: {list(cs.seen.acks[frame.downlink_id].items)}")
        assert index is not None
        sent[frame.items[index].phy_payload] = frame.items[index]

    try:
        async with gateway(tmp_path, broker, region, marshaler) as daemon:
            await config_applied_once(daemon, cs)
            assert daemon.downlink is not None and daemon.downlink.class_b is not None
            class_b = daemon.downlink.class_b
            await until(lambda: class_b.locked, 10.0, "no GPS lock")

            up = await uplink(daemon, cs)                                  # RX1 (of RX1+RX2)
            await expect_ok(cs.class_a(next(ids), up, b"\x60rx1"), 0)
            await transmitted(daemon, b"\x60rx1", timeout_s=10.0)

            up = await uplink(daemon, cs)                                  # RX2 only
            await expect_ok(cs.class_a(next(ids), up, b"\x60rx2-only", rx_window=2), 0)
            await transmitted(daemon, b"\x60rx2-only", timeout_s=10.0)

            up = await uplink(daemon, cs)                                  # RX1 late → RX2
            await asyncio.sleep(1.05)   # the RX1 moment has passed; RX2 is ~1 s ahead
            late = cs.class_a(next(ids), up, b"\x60rx1-late")
            index, status = await down(cs, late)
            assert (index, status) == (1, gw_pb2.TxAckStatus.OK)
            assert cs.seen.acks[late.downlink_id].items[0].status == gw_pb2.TxAckStatus.TOO_LATE
            sent[b"\x60rx1-late"] = late.items[1]
            await transmitted(daemon, b"\x60rx1-late", timeout_s=10.0)

            # join-accept at +5 s, class C now (~1 s at SF12), class B ping slot at +3 s
            join = await uplink(daemon, cs, join=True)
            assert join.rx_info.HasField("time_since_gps_epoch"), "GPS locked: GPS time expected"
            accept = b"\x20" + bytes(16)
            await expect_ok(cs.class_a(next(ids), join, accept, join=True), 0)
            await expect_ok(cs.class_c(next(ids), join.rx_info.gateway_id, b"\x60class-c"), 0)
            ping_us = join.rx_info.time_since_gps_epoch.ToMicroseconds() + 3_000_000
            await expect_ok(cs.class_b(next(ids), join.rx_info.gateway_id, b"\x60class-b",
                                       ping_us), 0)

            for payload, item in sent.items():
                entry = await transmitted(daemon, payload, timeout_s=10.0)
                assert abs(entry.frequency_hz - item.tx_info.frequency) < FREQ_TOLERANCE_HZ
                assert entry.power_dbm == min(item.tx_info.power, BOARD_MAX_DBM)
            clamped = sum(item.tx_info.power > BOARD_MAX_DBM for item in sent.values())

            def stats_with_all() -> gw_pb2.GatewayStats | None:
                return next((st for st in reversed(cs.seen.stats)
                             if st.tx_packets_emitted == len(sent)), None)

            stats = await asyncio.to_thread(cs.wait, lambda _s: stats_with_all())
            assert isinstance(stats, gw_pb2.GatewayStats)
            assert dict(stats.tx_packets_per_status) == {"OK": len(sent)}
            assert stats.tx_packets_received == len(sent)
            assert stats.metadata["tx_power_clamped"] == str(clamped)
            rx_dr = cs.per_dr(stats.rx_packets_per_modulation, uplink=True)
            assert rx_dr == {region.uplink_dr: 4}
            tx_dr = cs.per_dr(stats.tx_packets_per_modulation, uplink=False)
            assert sum(tx_dr.values()) == len(sent)
            assert stats.HasField("location") and stats.location.latitude != 0.0
            assert cs.seen.errors == []
            assert len(cs.seen.configs_sent) == 1
    finally:
        cs.close()


@pytest.mark.slow
@pytest.mark.parametrize("marshaler", ["protobuf", "json"])
@pytest.mark.parametrize("region_name", CASES)
def test_chirpstack_defaults_every_downlink_ends_ok(tmp_path: Path, broker: MosquittoBroker,
                                                   region_name: str, marshaler: str) -> None:
    asyncio.run(scenario(tmp_path, broker, REGIONS[region_name], marshaler))
