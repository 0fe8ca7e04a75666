"""Shared by the buffer's end-to-end tests and benchmarks (crash, outage, disk full).

Frames are LoRaWAN unconfirmed data uplinks whose DevAddr names the device and
whose FCnt is the device's frame number, so the subscriber can check per-device
order and loss from the payload alone. No tests here.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from pathlib import Path

from chirpstack_api.gw import gw_pb2

from tests.support.broker import MosquittoBroker

DEV_BASE = 0x26000000
_COVERED = re.compile(r"^timestamp=(\S+) .*event=buffer_committed covered=(\d+)", re.MULTILINE)


class PersistentBroker(MosquittoBroker):
    """Mosquitto keeping sessions and queued messages across a clean restart (SIGTERM).

    Unlike ``gateway.sim.local_broker.LocalBroker(persistent=True)`` it does not save its
    database after every message, which caps a broker at a few hundred messages per
    second on this machine and would make the gateway's drain look slow. Its queues
    are unbounded (Mosquitto otherwise drops past 1,000 queued messages per client,
    silently), so a slow subscriber cannot lose frames behind the gateway's back.
    """

    def config_lines(self) -> list[str]:
        lines = [line for line in super().config_lines()
                 if line not in ("persistence false", "max_queued_messages 0")]
        return [*lines, "persistence true", f"persistence_location {self.workdir}/",
                "autosave_interval 3600", "max_queued_messages 0", "max_inflight_messages 100"]


def phy(device: int, fcnt: int, extra: bytes = b"") -> bytes:
    """MHDR, DevAddr, FCtrl, FCnt (16 bits), FPort, payload, a fake MIC."""
    body = struct.pack("<BIBHB", 0x40, DEV_BASE + device, 0, fcnt & 0xFFFF, 1)
    return body + extra + struct.pack("<I", (device * 2654435761 + fcnt) & 0xFFFFFFFF)


def packet(device: int, fcnt: int, extra: bytes = b"") -> dict[str, object]:
    return {"phy_payload": phy(device, fcnt, extra).hex(), "frequency": 868_100_000, "sf": 7,
            "bw": 125_000, "cr": "4/5", "rssi": -60, "snr": 7.5}


def key(frame_phy: bytes) -> tuple[int, int]:
    """(device, fcnt) of a frame made by ``phy``."""
    _mhdr, addr, _fctrl, fcnt, _port = struct.unpack_from("<BIBHB", frame_phy)
    return addr - DEV_BASE, fcnt


def order_violations(frames: Iterable[gw_pb2.UplinkFrame]) -> int:
    """Frames that arrived after a later frame of the same device (first deliveries only:
    a QoS 1 duplicate of an earlier frame is not a reordering)."""
    last: dict[int, int] = {}
    seen: set[tuple[int, int]] = set()
    bad = 0
    for f in frames:
        k = key(f.phy_payload)
        if k in seen:
            continue
        seen.add(k)
        dev, fcnt = k
        if fcnt <= last.get(dev, -1):
            bad += 1
        last[dev] = max(fcnt, last.get(dev, -1))
    return bad


def covered_lines(log_text: str) -> list[tuple[str, int]]:
    """``(timestamp, covered)`` of every ``buffer_committed`` debug line, in order."""
    return [(m.group(1), int(m.group(2))) for m in _COVERED.finditer(log_text)]


def read_from(path: Path, offset: int) -> str:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")
