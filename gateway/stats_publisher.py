"""Periodic ``event/stats``: ChirpStack counts a gateway as online only while these arrive.

Stats are a snapshot, not history: when the link is down the snapshot is simply
skipped (never buffered), and the next one carries the up-to-date counters.
The TX side (downlink counters, duty-cycle use per sub-band, ``config_version``,
location) comes from the downlink path; ChirpStack compares the metadata's
``config_version`` with its own and sends ``command/config`` when they differ. The
per-modulation counts carry the code rate, without which ChirpStack maps them to no
data rate (chirpstack ``src/uplink/stats.rs``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

import structlog
from chirpstack_api.gw import gw_pb2

from gateway import __version__
from gateway.counters import UplinkCounters
from packet_forwarder.chirpstack import marshal, set_modulation
from packet_forwarder.mqtt_link import MqttLink
from packet_forwarder.topics import Topics

log = structlog.get_logger(__name__)


class _HasStats(Protocol):
    def stats(self) -> object: ...


class _FillsTxStats(Protocol):
    def fill_stats(self, msg: gw_pb2.GatewayStats) -> None: ...


def build_stats(
    gateway_id: str, counters: UplinkCounters, buffer_stats: object,
    downlink: _FillsTxStats | None = None,
) -> gw_pb2.GatewayStats:
    msg = gw_pb2.GatewayStats()
    msg.gateway_id = gateway_id
    msg.time.FromNanoseconds(time.time_ns())
    msg.rx_packets_received = counters.rx_received
    msg.rx_packets_received_ok = counters.rx_ok
    for freq, n in counters.per_frequency.items():
        msg.rx_packets_per_frequency[freq] = n
    for (modulation, sf, bw, rate, code_rate), n in counters.per_modulation.items():
        entry = msg.rx_packets_per_modulation.add(count=n)
        set_modulation(entry.modulation, modulation, sf, bw, rate, code_rate)
    msg.metadata["software"] = f"lora-gateway {__version__}"
    for name in ("depth", "oldest_age_s", "dropped_total"):
        value = getattr(buffer_stats, name, None)
        if value is not None:
            text = f"{value:.0f}" if isinstance(value, float) else str(value)
            msg.metadata[f"buffer_{name}"] = text
    for reason, n in sorted(counters.dropped.items()):
        msg.metadata[f"drop_{reason}"] = str(n)
    if downlink is not None:
        downlink.fill_stats(msg)
    return msg


class StatsPublisher:
    def __init__(self, link: MqttLink, topics: Topics, gateway_id: str, counters: UplinkCounters,
                 buffer: _HasStats, *, interval_s: float, marshaler: str,
                 downlink: _FillsTxStats | None = None) -> None:
        self._link = link
        self._topic = topics.event("stats")
        self._gateway_id = gateway_id
        self._counters = counters
        self._buffer = buffer
        self.interval_s = interval_s
        """Settable: ``command/config`` may carry the server's stats interval."""
        self._marshaler = marshaler
        self._downlink = downlink

    async def run(self) -> None:
        last_error = ""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                msg = build_stats(self._gateway_id, self._counters, self._buffer.stats(),
                                  self._downlink)
                payload = marshal(msg, self._marshaler)
            except Exception as exc:  # e.g. a chirpstack-api without a field we fill
                # Without stats ChirpStack shows the gateway offline: never fail silently,
                # and say it once per distinct cause rather than every interval.
                if repr(exc) != last_error:
                    last_error = repr(exc)
                    log.error("stats_not_built", error=last_error,
                              hint="check the installed chirpstack-api version")
                continue
            last_error = ""
            if not self._link.publish(self._topic, payload, qos=0):
                log.debug("stats_skipped", reason="backhaul down")
