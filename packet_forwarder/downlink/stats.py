"""The TX half of ``gw.GatewayStats``: downlink counters and duty-cycle use per sub-band."""

from __future__ import annotations

from chirpstack_api.common import common_pb2
from chirpstack_api.gw import gw_pb2

from packet_forwarder.chirpstack import set_modulation
from packet_forwarder.downlink.duty_cycle import DutyCycle
from packet_forwarder.downlink.handler import DownlinkCounters
from packet_forwarder.regions.model import Region


def _set_duration_us(target: object, us: int) -> None:
    target.FromMicroseconds(us)  # type: ignore[attr-defined]


def fill_tx_stats(stats: gw_pb2.GatewayStats, counters: DownlinkCounters,
                  duty_cycle: DutyCycle | None, region: Region) -> None:
    """Write the downlink fields of ``stats`` (the daemon fills the RX side and the rest)."""
    stats.tx_packets_received = counters.received
    stats.tx_packets_emitted = counters.emitted
    for freq, n in counters.per_frequency.items():
        stats.tx_packets_per_frequency[freq] = n
    for name, n in counters.per_status.items():
        stats.tx_packets_per_status[name] = n
    for (modulation, sf, bw, rate, code_rate), n in counters.per_modulation.items():
        entry = stats.tx_packets_per_modulation.add(count=n)
        set_modulation(entry.modulation, modulation, sf, bw, rate, code_rate)
    stats.metadata["tx_power_clamped"] = str(counters.power_clamped)
    if duty_cycle is None or not region.sub_bands:
        return
    dc = stats.duty_cycle_stats
    if region.regulation == "ETSI_EN_300_220":
        dc.regulation = common_pb2.Regulation.Value("ETSI_EN_300_220")
    _set_duration_us(dc.window, int(duty_cycle.window_s * 1e6))
    for band in duty_cycle.usage():
        entry = dc.bands.add(name=band.name, frequency_min=band.min_hz, frequency_max=band.max_hz)
        _set_duration_us(entry.load_max, band.load_max_us)
        _set_duration_us(entry.load_tracked, band.load_tracked_us)
