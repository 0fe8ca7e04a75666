"""The production ``Daemon`` run inside a test's event loop, with the emulated chip at hand.

The broker is a real Mosquitto and the network server a real MQTT client
(``NetworkServerStandIn``); only the emulator's TX log (what the chip decoded from its
registers and put on the air) is read directly, which the subprocess tests cannot do.
"""

from __future__ import annotations

import asyncio
import itertools
import struct
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from chirpstack_api.gw import gw_pb2

from gateway.config import Config, load_config
from gateway.daemon import Daemon
from gateway.sim.local_broker import LocalBroker
from hal.emulator.chip import Sx1302Emulator
from hal.emulator.transmit import TxLogEntry
from hal.types import COUNTER_MODULO
from packet_forwarder.downlink.status import TxStatus
from tests.support.gateway_proc import NetworkServerStandIn, write_config

GW = "0016c001ff10a235"
NEW_PLAN_HZ = (866_100_000, 866_300_000, 866_500_000, 866_700_000, 866_900_000, 867_100_000,
               867_300_000, 867_500_000)
_ids = itertools.count(1000)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    b = LocalBroker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


@pytest.fixture
def config(tmp_path: Path, broker: LocalBroker) -> Config:
    return load_config(write_config(tmp_path, broker.port))


@asynccontextmanager
async def running(config: Config, ns: NetworkServerStandIn) -> AsyncIterator[Daemon]:
    """The daemon running in this loop until the block ends, ONLINE on the broker."""
    ns.online.clear()
    daemon = Daemon(config)
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.to_thread(ns.wait_online)
        assert daemon.radio is not None and daemon.radio.emulator is not None
        assert daemon.downlink is not None
        yield daemon
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 30)


def emulator(daemon: Daemon) -> Sx1302Emulator:
    assert daemon.radio is not None and daemon.radio.emulator is not None
    return daemon.radio.emulator


async def uplink(daemon: Daemon, ns: NetworkServerStandIn, frequency: int = 868_100_000,
                 sf: int = 7) -> gw_pb2.UplinkFrame:
    """Put one unique frame on the air and wait until the network server has it."""
    phy = bytes([0x40]) + struct.pack("<IBH", 0x26011234, 0, next(_ids)) + b"\x01\xaa" + bytes(4)
    emulator(daemon).inject(phy, frequency_hz=frequency, sf=sf, bw_hz=125_000, rssi_dbm=-60,
                            snr_db=7.0)
    return await asyncio.to_thread(ns.wait_uplink, phy)


async def transmitted(daemon: Daemon, payload: bytes, timeout_s: float = 5.0) -> TxLogEntry:
    """The emulator's TX log entry for ``payload``, once the chip has been loaded with it."""
    for _ in range(int(timeout_s / 0.01)):
        found = [e for e in emulator(daemon).tx_log if e.payload == payload]
        if found:
            assert len(found) == 1, "sent twice"
            return found[0]
        await asyncio.sleep(0.01)
    raise TimeoutError("the packet never reached the chip")


async def send(ns: NetworkServerStandIn, frame: gw_pb2.DownlinkFrame) -> list[TxStatus]:
    await asyncio.to_thread(ns.command, "down", frame.SerializeToString())
    ack = await asyncio.to_thread(ns.wait_ack, frame.downlink_id)
    return [TxStatus(i.status) for i in ack.items]


def counter_delta(later: int, earlier: int) -> int:
    return (later - earlier + COUNTER_MODULO // 2) % COUNTER_MODULO - COUNTER_MODULO // 2


def configuration(version: str, frequencies: tuple[int, ...]) -> bytes:
    cfg = gw_pb2.GatewayConfiguration(gateway_id=GW, version=version)
    for f in frequencies:
        ch = cfg.channels.add(frequency=f)
        ch.lora_modulation_config.bandwidth = 125_000
        ch.lora_modulation_config.spreading_factors.extend([7, 8, 9, 10, 11, 12])
    return cfg.SerializeToString()


def channels(daemon: Daemon) -> set[int]:
    """Multi-SF channel frequencies as the chip's registers hold them (IF steps of ~490 Hz),
    rounded to the 100 kHz grid the plans use."""
    chans = emulator(daemon).channel_frequencies()
    return {round(f / 100_000) * 100_000 for i, f in chans.items() if i < 8}


async def until(cond: object, timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if callable(cond) and cond():
            return
        await asyncio.sleep(0.02)
    raise TimeoutError("condition not reached")
