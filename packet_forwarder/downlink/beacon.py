"""Class B beacons: the frame each region defines, and when and where it goes out.

A beacon leaves every 128 s at a GPS time that is a multiple of 128 s. Its frame
is a network-common part (reserved bytes, the GPS time in seconds, a CRC) and a
gateway-specific part (an info descriptor, the antenna's latitude and longitude,
reserved bytes, a CRC); both CRCs are CRC-16/XMODEM (polynomial 0x1021, initial 0),
little-endian, as in the LoRaWAN class B specification.
"""

from __future__ import annotations

import binascii
import math
import struct
from collections import Counter
from dataclasses import dataclass

from hal.types import Modulation, TxPacket, TxTiming
from packet_forwarder.downlink.airtime import lora_time_on_air_us
from packet_forwarder.downlink.gps import GpsClock
from packet_forwarder.downlink.jit import ItemKind, JitQueue, QueueItem
from packet_forwarder.downlink.status import TxStatus
from packet_forwarder.regions.model import BeaconSpec, Region

BEACON_PERIOD_S = 128
BEACON_CODE_RATE = "4/5"


@dataclass(frozen=True, slots=True)
class BeaconInfo:
    """The gateway-specific part: info descriptor 0 = coordinates of the first antenna."""

    latitude: float = 0.0
    longitude: float = 0.0
    info_desc: int = 0


def _coordinate(value: float, span: float) -> bytes:
    """Signed 24-bit fraction of ``span`` degrees, little-endian, clamped to the range."""
    raw = max(-(1 << 23), min((1 << 23) - 1, int(value / span * (1 << 23))))
    return struct.pack("<i", raw)[:3]


def _crc(data: bytes) -> bytes:
    return struct.pack("<H", binascii.crc_hqx(data, 0))


def beacon_frame(spec: BeaconSpec, beacon_time_s: int, info: BeaconInfo) -> bytes:
    """The beacon payload for GPS second ``beacon_time_s`` (only its low 32 bits are sent)."""
    common = bytes(spec.rfu1_bytes) + struct.pack("<I", beacon_time_s & 0xFFFFFFFF)
    gateway = (bytes([info.info_desc & 0xFF]) + _coordinate(info.latitude, 90.0)
               + _coordinate(info.longitude, 180.0) + bytes(spec.rfu2_bytes))
    return common + _crc(common) + gateway + _crc(gateway)


def next_beacon_time_s(gps_time_us: int, period_s: int = BEACON_PERIOD_S) -> int:
    """The first beacon time (GPS seconds, multiple of the period) strictly after now."""
    return (gps_time_us // 1_000_000 // period_s + 1) * period_s


def beacon_packet(region: Region, beacon_time_s: int, count_us: int, power_dbm: int,
                  info: BeaconInfo) -> tuple[TxPacket, int]:
    """The TX packet for one beacon and its time on air (µs); raises if the region has none."""
    spec = region.beacon
    if spec is None:
        raise ValueError(f"{region.name} defines no class B beacon")
    dr = region.data_rate(spec.data_rate)
    if dr is None or dr.modulation is not Modulation.LORA:
        raise ValueError(f"{region.name} beacon data rate {spec.data_rate} is not LoRa")
    payload = beacon_frame(spec, beacon_time_s, info)
    packet = TxPacket(
        payload=payload, frequency_hz=spec.frequency_for(beacon_time_s), power_dbm=power_dbm,
        modulation=Modulation.LORA, spreading_factor=dr.spreading_factor,
        bandwidth_hz=dr.bandwidth_hz, code_rate=BEACON_CODE_RATE, invert_polarity=False,
        preamble=spec.preamble, no_crc=True, no_header=True, timing=TxTiming.ON_GPS_PPS,
        count_us=count_us)
    toa = lora_time_on_air_us(dr.spreading_factor, dr.bandwidth_hz, BEACON_CODE_RATE,
                              len(payload), preamble=spec.preamble, crc=False,
                              implicit_header=True)
    return packet, toa


class BeaconScheduler:
    """Keeps the next class B beacons in the TX queue while GPS time is known.

    Called from the radio loop (every poll is fine: it only queues beacons not yet
    queued). Beacons go through the same queue as downlinks, so a downlink that
    would overlap a beacon's guard window is refused COLLISION_BEACON.
    """

    def __init__(self, region: Region, queue: JitQueue, *, info: BeaconInfo,
                 power_eirp_dbm: int, antenna_gain_dbi: float = 0.0, ahead: int = 2) -> None:
        if region.beacon is None:
            raise ValueError(f"{region.name} defines no class B beacon")
        self.region = region
        self.queue = queue
        self.info = info
        self.power_dbm = math.floor(power_eirp_dbm - antenna_gain_dbi + 1e-9)
        self.ahead = ahead
        self._queued: set[int] = set()
        self.refused: Counter[str] = Counter()

    def poll(self, now_count_us: int, gps: GpsClock | None) -> list[TxStatus]:
        """Queue the beacons of the next ``ahead`` periods; returns the statuses of new ones."""
        gps_now = None if gps is None else gps.gps_time_at(now_count_us)
        if gps is None or gps_now is None:
            return []
        first = next_beacon_time_s(gps_now)
        self._queued = {t for t in self._queued if t * 1_000_000 > gps_now}
        statuses = []
        for k in range(self.ahead):
            t = first + k * BEACON_PERIOD_S
            try:
                count = gps.count_at(t * 1_000_000)
            except ValueError:  # beyond what the counter can name from this reference
                count = None
            if t in self._queued or count is None:
                continue
            packet, toa = beacon_packet(self.region, t, count, self.power_dbm, self.info)
            status = self.queue.schedule(QueueItem(packet, toa, ItemKind.BEACON), now_count_us)
            if status is TxStatus.OK:
                self._queued.add(t)
            else:
                self.refused[status.name] += 1
            statuses.append(status)
        return statuses

    def reset(self) -> None:
        """Forget queued beacons (call with :meth:`DownlinkHandler.reset_session`)."""
        self._queued.clear()
