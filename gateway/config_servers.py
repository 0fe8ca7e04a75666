"""``[[server]]``: the network servers beyond the ``[mqtt]`` one, validated once at start.

``[mqtt]`` stays what it always was, server ``default`` (ChirpStack MQTT, downlinks
on), so today's configuration files behave exactly as before. Each ``[[server]]``
adds one more: a ChirpStack MQTT broker (same keys as ``[mqtt]``, with ``url``
for ``server``) or a Semtech UDP server (``url = "udp://host:port"``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from common.toml_reader import TableReader
from packet_forwarder.routing import PrefixError, RouteFilter

if TYPE_CHECKING:
    from gateway.config import MqttSection

PROTOCOLS = ("chirpstack_mqtt", "semtech_udp")
DEFAULT_NAME = "default"
_NAME = r"[a-z0-9][a-z0-9_-]{0,31}"


@dataclass(frozen=True)
class ServerSection:
    name: str
    protocol: str
    url: str
    route: RouteFilter
    downlinks: bool
    mqtt: MqttSection | None
    """The broker settings for ``chirpstack_mqtt``; None for ``semtech_udp``."""
    keepalive_s: float = 10.0
    """``semtech_udp``: PULL_DATA period."""
    stats_interval_s: float = 30.0
    """``semtech_udp``: period of the ``stat`` PUSH_DATA (``[mqtt]``'s key for MQTT servers)."""


MqttReader = Callable[[TableReader, str], "MqttSection"]


def route_filter(t: TableReader) -> RouteFilter:
    """``dev_addr_prefixes`` / ``join_eui_prefixes`` of a server table (absent: all)."""
    dev_addr = t.list_of_strings("dev_addr_prefixes")
    join_eui = t.list_of_strings("join_eui_prefixes")
    try:
        RouteFilter.parse(dev_addr, [])
    except PrefixError as exc:
        raise t.error("dev_addr_prefixes", dev_addr, f"8 hex digits/BITS ({exc})") from None
    try:
        return RouteFilter.parse(dev_addr, join_eui)
    except PrefixError as exc:
        raise t.error("join_eui_prefixes", join_eui, f"16 hex digits/BITS ({exc})") from None


def read_servers(tables: list[TableReader], read_mqtt: MqttReader) -> tuple[ServerSection, ...]:
    """Every ``[[server]]``, names unique and never ``default`` (that is ``[mqtt]``)."""
    out: list[ServerSection] = []
    for t in tables:
        name = t.string("name", pattern=_NAME,
                        pattern_text="1-32 of a-z, 0-9, '_', '-' (used in logs and status)")
        if name == DEFAULT_NAME or any(s.name == name for s in out):
            raise t.error("name", name, f"a name not used before ({DEFAULT_NAME!r} is [mqtt])")
        protocol = t.string("protocol", choices=PROTOCOLS)
        route = route_filter(t)
        downlinks = t.boolean("downlinks", True)
        if protocol == "semtech_udp":
            url = t.string("url", pattern=r"udp://[^\s/:]+(:\d{1,5})?/?",
                           pattern_text="udp://HOST[:PORT]")
            keepalive = t.number("keepalive_s", 10.0, low=1.0, high=600.0)
            stats = t.number("stats_interval_s", 30.0, low=1.0, high=3600.0)
            t.finish()
            out.append(ServerSection(name, protocol, url, route, downlinks, None, keepalive,
                                     stats))
        else:
            mqtt = read_mqtt(t, "url")  # finishes the table
            out.append(ServerSection(name, protocol, mqtt.server, route, downlinks, mqtt))
    return tuple(out)
