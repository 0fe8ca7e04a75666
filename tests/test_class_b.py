"""Class B through the real daemon: GPS lock from the emulated receiver, beacons, GPS-timed
downlinks, and what happens without GPS.

The emulated receiver starts a few GPS seconds before a beacon time (a multiple of
128 s), so the first beacon is due about four seconds after start instead of up to
two minutes.
"""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

from chirpstack_api.gw import gw_pb2

from gateway.class_b import ClassB
from gateway.config import Config, load_config
from gateway.daemon import Daemon
from gateway.sim.local_broker import LocalBroker
from hal.emulator.transmit import TxLogEntry
from hal.types import TxTiming
from packet_forwarder.downlink.status import TxStatus
from tests.support.gateway_proc import GATEWAY_ID, NetworkServerStandIn, write_config
from tests.support.inprocess import (
    broker,  # noqa: F401  (fixture)
    emulator,
    running,
    send,
)

TX_STEP_HZ = 32_000_000 / 2**18
"""The TX frequency register's resolution (sx1302_hal SX1302_FREQ_TO_REG)."""
FIRST_BEACON_S = 1_400_000_000
"""A multiple of 128: the first beacon time after the emulated start."""
START_S = FIRST_BEACON_S - 4


def class_b_config(tmp_path: Path, port: int, **class_b: str) -> Config:
    body = "\n".join(f"{k} = {v}" for k, v in class_b.items())
    return load_config(write_config(tmp_path, port, class_b=body))


def gps_frame(downlink_id: int, gps_time_us: int, payload: bytes) -> gw_pb2.DownlinkFrame:
    frame = gw_pb2.DownlinkFrame(downlink_id=downlink_id, gateway_id=GATEWAY_ID)
    item = frame.items.add(phy_payload=payload)
    tx = item.tx_info
    tx.frequency = 869_525_000
    tx.power = 14
    lora = tx.modulation.lora
    lora.spreading_factor = 9
    lora.bandwidth = 125_000
    lora.code_rate = gw_pb2.CodeRate.CR_4_5
    lora.polarization_inversion = True
    tx.timing.gps_epoch.time_since_gps_epoch.FromMicroseconds(gps_time_us)
    return frame


def class_b_of(daemon: Daemon) -> ClassB:
    assert daemon.downlink is not None and daemon.downlink.class_b is not None
    return daemon.downlink.class_b


async def wait_for(predicate: object, timeout_s: float) -> None:
    assert callable(predicate)
    for _ in range(int(timeout_s / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise TimeoutError("condition not reached")


async def beacon_entry(daemon: Daemon, timeout_s: float = 10.0) -> TxLogEntry:
    def beacons() -> list[TxLogEntry]:
        return [e for e in emulator(daemon).tx_log if e.implicit_header]
    await wait_for(lambda: beacons(), timeout_s)
    return beacons()[0]


def test_beacon_leaves_on_the_pps_of_a_128_s_gps_time_without_header_or_crc(
        tmp_path: Path, broker: LocalBroker) -> None:
    config = class_b_config(tmp_path, broker.port, beacon="true",
                            emulator_start_gps_s=str(START_S), latitude="48.8566",
                            longitude="2.3522")

    async def scenario() -> None:
        ns = NetworkServerStandIn(broker.port)
        try:
            async with running(config, ns) as daemon:
                await wait_for(lambda: class_b_of(daemon).locked, 5.0)
                entry = await beacon_entry(daemon)
                assert entry.timing is TxTiming.ON_GPS_PPS
                assert not entry.crc and entry.implicit_header and not entry.invert_polarity
                assert abs(entry.frequency_hz - 869_525_000) < TX_STEP_HZ
                assert (entry.spreading_factor, entry.bandwidth_hz) == (9, 125_000)
                assert entry.preamble == 10 and len(entry.payload) == 17
                # RFU(2) | GPS time (4, little-endian) | CRC | info | lat | lon | CRC
                assert struct.unpack_from("<I", entry.payload, 2)[0] == FIRST_BEACON_S
                gps_ns = class_b_of(daemon).reader.clock.count_to_gps_ns(entry.start_count_us)
                assert abs(gps_ns - FIRST_BEACON_S * 10**9) <= 1_000_000  # on the PPS, ±1 ms
                lat = int.from_bytes(entry.payload[9:12], "little", signed=True)
                assert abs(lat / (1 << 23) * 90 - 48.8566) < 1e-4
                assert class_b_of(daemon).counters.beacons_queued >= 1
                stats = gw_pb2.GatewayStats()
                assert daemon.downlink is not None
                daemon.downlink.fill_stats(stats)
                assert stats.metadata["gps_locked"] == "true"
                assert int(stats.metadata["beacons_queued"]) >= 1
        finally:
            ns.close()

    asyncio.run(scenario())


def test_gps_timed_downlink_goes_out_at_its_gps_time_and_beacon_slot_is_protected(
        tmp_path: Path, broker: LocalBroker) -> None:
    config = class_b_config(tmp_path, broker.port, beacon="true",
                            emulator_start_gps_s=str(START_S))

    async def scenario() -> None:
        ns = NetworkServerStandIn(broker.port)
        try:
            async with running(config, ns) as daemon:
                cb = class_b_of(daemon)
                await wait_for(lambda: cb.locked, 5.0)
                # after the first beacon's reserved window (the beacon's guard and reserved
                # time around FIRST_BEACON_S refuse downlinks COLLISION_BEACON)
                target_us = (FIRST_BEACON_S + 4) * 1_000_000 + 250_000
                payload = b"\x60class-b-ping"
                assert await send(ns, gps_frame(500, target_us, payload)) == [TxStatus.OK]
                await wait_for(lambda: any(e.payload == payload
                                           for e in emulator(daemon).tx_log), 12.0)
                [entry] = [e for e in emulator(daemon).tx_log if e.payload == payload]
                sent_ns = cb.reader.clock.count_to_gps_ns(entry.start_count_us)
                assert abs(sent_ns - target_us * 1000) <= 1_000_000
                # the next beacon slot is taken: a downlink on top of it is refused
                clash = gps_frame(501, (FIRST_BEACON_S + 128) * 1_000_000, b"\x60clash")
                assert await send(ns, clash) == [TxStatus.COLLISION_BEACON]
        finally:
            ns.close()

    asyncio.run(scenario())


def test_without_gps_class_b_is_refused_gps_unlocked(tmp_path: Path,
                                                      broker: LocalBroker) -> None:
    config = class_b_config(tmp_path, broker.port, gps='"none"')

    async def scenario() -> None:
        ns = NetworkServerStandIn(broker.port)
        try:
            async with running(config, ns) as daemon:
                assert daemon.downlink is not None and daemon.downlink.class_b is None
                frame = gps_frame(600, (FIRST_BEACON_S + 10) * 1_000_000, b"\x60nogps")
                assert await send(ns, frame) == [TxStatus.GPS_UNLOCKED]
        finally:
            ns.close()

    asyncio.run(scenario())


def test_bad_class_b_values_are_refused_with_the_key_named(tmp_path: Path) -> None:
    import pytest

    from common.toml_reader import ConfigError

    with pytest.raises(ConfigError, match=r"class_b\.gps"):
        class_b_config(tmp_path, 1883, gps='"emulator"')
    with pytest.raises(ConfigError, match=r"class_b\.latitude"):
        class_b_config(tmp_path, 1883, latitude="91.0")


def test_lock_is_lost_when_pps_pairings_stop_and_class_b_then_refused() -> None:
    from types import SimpleNamespace

    from hal.backends.emulated import open_emulated
    from hal.emulator.gps import FreeRunningGps
    from hal.gps_time import REFERENCE_MAX_AGE_S, GpsClock, GpsReader
    from hal.types import EU868_DEFAULT_PLAN

    t = [100.0]
    conc, emu = open_emulated(clock=lambda: t[0])
    conc.start(EU868_DEFAULT_PLAN)
    port = FreeRunningGps(emu, gps_seconds=START_S)
    reader = GpsReader(port, conc.pps_counter_us, GpsClock(host_clock=lambda: t[0]))
    handler = SimpleNamespace(gps=None)
    cb = ClassB(reader, handler)  # type: ignore[arg-type]
    for _ in range(3):
        t[0] += 1.0
        cb.service(conc.counter_us())
    assert cb.locked and handler.gps is not None
    assert handler.gps.count_at((START_S + 10) * 10**6) is not None
    port.fix = False  # antenna unplugged: no PPS, no valid time messages
    t[0] += REFERENCE_MAX_AGE_S + 1.0
    cb.service(conc.counter_us())
    assert not cb.locked and handler.gps is None
