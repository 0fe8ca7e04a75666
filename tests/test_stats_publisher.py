"""``event/stats`` content: the per-modulation counts ChirpStack maps to data rates."""

from __future__ import annotations

import asyncio

import structlog
from chirpstack_api.gw import gw_pb2

from gateway.counters import UplinkCounters
from gateway.stats_publisher import StatsPublisher, build_stats
from packet_forwarder.topics import Topics

GW = "0016c001ff10a235"


class _Buffer:
    depth = 0
    oldest_age_s = None
    dropped_total = 0


def test_rx_per_modulation_carries_spreading_factor_bandwidth_and_code_rate() -> None:
    counters = UplinkCounters(rx_received=4, rx_ok=4)
    counters.per_modulation.update({("LORA", 7, 125_000, 0, "4/5"): 3,
                                    ("FSK", 0, 0, 50_000, ""): 1})
    msg = build_stats(GW, counters, _Buffer())
    got = {}
    for entry in msg.rx_packets_per_modulation:
        kind = entry.modulation.WhichOneof("parameters")
        key = ((kind, entry.modulation.lora.spreading_factor, entry.modulation.lora.bandwidth,
                entry.modulation.lora.code_rate) if kind == "lora"
               else (kind, entry.modulation.fsk.datarate))
        got[key] = entry.count
    assert got == {("lora", 7, 125_000, gw_pb2.CodeRate.CR_4_5): 3, ("fsk", 50_000): 1}


class _BrokenDownlink:
    def fill_stats(self, msg: gw_pb2.GatewayStats) -> None:
        raise AttributeError("duty_cycle_stats")   # what an old chirpstack-api gives


class _Link:
    def __init__(self) -> None:
        self.published: list[bytes] = []

    def publish(self, _topic: str, payload: bytes, qos: int = 0) -> bool:
        self.published.append(payload)
        return True


def test_stats_that_cannot_be_built_are_logged_once_not_dropped_silently() -> None:
    link = _Link()
    publisher = StatsPublisher(link, Topics("eu868", GW), GW, UplinkCounters(),  # type: ignore[arg-type]
                               _BufferWithStats(), interval_s=0.01, marshaler="protobuf",
                               downlink=_BrokenDownlink())

    async def run_a_while() -> None:
        task = asyncio.create_task(publisher.run())
        await asyncio.sleep(0.1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    with structlog.testing.capture_logs() as logs:
        asyncio.run(run_a_while())
    errors = [e for e in logs if e["event"] == "stats_not_built"]
    assert len(errors) == 1 and "duty_cycle_stats" in errors[0]["error"]
    assert link.published == []


class _BufferWithStats:
    def stats(self) -> _Buffer:
        return _Buffer()
