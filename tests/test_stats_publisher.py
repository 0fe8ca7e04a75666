"""``event/stats`` content: the per-modulation counts ChirpStack maps to data rates."""

from __future__ import annotations

from chirpstack_api.gw import gw_pb2

from gateway.counters import UplinkCounters
from gateway.stats_publisher import build_stats

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
