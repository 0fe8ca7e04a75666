"""Virtual ABP devices for the demo: real LoRaWAN 1.0 frames with real keys and MICs.

Each sensor encodes a plausible reading for its kind (a water meter's index, a
bin's fill level, a classroom's CO2, a building's energy), encrypts and signs it
with its session keys, and "transmits" it into the emulated concentrator on one
of the EU868 join channels, so the demo exercises the same path as a real radio.
"""

from __future__ import annotations

import asyncio
import random
import struct
from typing import Protocol

import structlog

from gateway.config import SensorConfig
from packet_forwarder.lorawan.encode import DataFields, SessionKeys10, build_data_uplink_10

log = structlog.get_logger(__name__)

EU868_JOIN_CHANNELS = (868_100_000, 868_300_000, 868_500_000)


class _Emitter(Protocol):
    """The part of the emulator a sensor needs: put one packet on the air."""

    def inject(self, payload: bytes, *, frequency_hz: int, sf: int, bw_hz: int, cr: str,
               rssi_dbm: float, snr_db: float, crc_ok: bool = True) -> int | None: ...


def reading(kind: str, step: int, rng: random.Random) -> tuple[int, bytes]:
    """(FPort, application payload) for the ``step``-th reading of a sensor of ``kind``."""
    if kind == "water_meter":
        litres = 1_250_000 + step * rng.randint(0, 40)
        return 1, struct.pack(">IBB", litres, 97, 0)
    if kind == "bin_level":
        return 2, struct.pack(">Bh", min(100, (step * 3) % 110), rng.randint(-50, 300))
    if kind == "air_quality":
        return 3, struct.pack(">HhB", rng.randint(420, 1400), rng.randint(180, 240),
                              rng.randint(30, 60))
    return 4, struct.pack(">IH", 8_000_000 + step * 125, rng.randint(200, 9000))


class VirtualSensor:
    def __init__(self, config: SensorConfig, seed: int) -> None:
        self.config = config
        self.fcnt = 0
        self._rng = random.Random(seed)
        self._keys = SessionKeys10(nwk_s_key=bytes.fromhex(config.nwk_s_key),
                                   app_s_key=bytes.fromhex(config.app_s_key))
        self._addr = bytes.fromhex(config.dev_addr)

    def next_frame(self) -> bytes:
        fport, payload = reading(self.config.kind, self.fcnt, self._rng)
        fields = DataFields(dev_addr=self._addr, fcnt=self.fcnt, fport=fport, payload=payload)
        phy = build_data_uplink_10(fields, self._keys)
        self.fcnt += 1
        return phy

    def emit(self, emulator: _Emitter) -> None:
        freq = self.config.frequency_hz or self._rng.choice(EU868_JOIN_CHANNELS)
        emulator.inject(
            self.next_frame(), frequency_hz=freq, sf=self.config.spreading_factor, bw_hz=125_000,
            cr="4/5", rssi_dbm=float(self._rng.randint(-115, -60)),
            snr_db=round(self._rng.uniform(-5.0, 10.0), 2),
        )


class VirtualSensors:
    """Runs every configured sensor on its own timer until stopped."""

    def __init__(self, configs: tuple[SensorConfig, ...], emulator: _Emitter) -> None:
        self.sensors = [VirtualSensor(c, seed=i) for i, c in enumerate(configs)]
        self._emulator = emulator
        self._stopped = asyncio.Event()

    def stop(self) -> None:
        self._stopped.set()

    async def run(self) -> None:
        await asyncio.gather(*(self._run_one(s) for s in self.sensors))

    async def _run_one(self, sensor: VirtualSensor) -> None:
        # Spread first transmissions so the demo does not start with a burst.
        delay = sensor._rng.uniform(0.2, sensor.config.interval_s)
        while not self._stopped.is_set():
            try:
                await asyncio.wait_for(self._stopped.wait(), delay)
                return
            except TimeoutError:
                pass
            sensor.emit(self._emulator)
            delay = sensor.config.interval_s * sensor._rng.uniform(0.9, 1.1)
