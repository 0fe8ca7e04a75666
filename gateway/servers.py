"""Several network servers: routing each uplink, and the servers beyond ``[mqtt]``.

Isolation is structural: every server has its own link and its own
:class:`UplinkBuffer` (in-memory backlog, cursor, bounds, drop counts), so one
server's outage or backlog never holds another's live frames, and a frame
delivered to one server is never sent to it again because another is draining.
Storage is shared: every buffer's store is the same SQLite file, a frame routed to
several servers is one row (one seq, from one :class:`SeqCounter`) with a bit per
server still owed it, and the row goes when the last of them acknowledges it.
Files of the earlier one-file-per-server layout are merged in at start.

Downlinks from every server that allows them go through the one
:class:`~gateway.downlink_path.DownlinkPath` (one JIT queue, one duty-cycle
account), and each answer goes back on the link the request came in on.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from chirpstack_api.gw import gw_pb2
from google.protobuf.message import DecodeError
from structlog.contextvars import bind_contextvars

from buffer.store import FrameStore
from buffer.uplink_buffer import BufferConfig, SeqCounter, UplinkBuffer
from gateway.config_servers import DEFAULT_NAME, ServerSection
from gateway.counters import UplinkCounters
from gateway.downlink_path import DownlinkPath
from gateway.stats_publisher import build_stats
from gateway.uplink_sink import MqttUplinkSink
from packet_forwarder.chirpstack import marshal
from packet_forwarder.downlink.handler import DownlinkResult
from packet_forwarder.downlink.status import TxStatus
from packet_forwarder.mqtt_link import MqttLink, MqttSettings
from packet_forwarder.routing import RouteFilter
from packet_forwarder.topics import Topics

if TYPE_CHECKING:  # imported in _udp, when a [[server]] speaks Semtech UDP
    from gateway.udp_uplink_sink import UdpUplinkSink
    from packet_forwarder.semtech_udp.downlink import UdpDownlinks
    from packet_forwarder.semtech_udp.link import SemtechUdpLink

log = structlog.get_logger(__name__)


def server_buffer_path(default: Path, name: str) -> Path:
    """Where server ``name`` had its own buffer file before the store was shared."""
    return default.with_name(f"{default.stem}.{name}{default.suffix}")


def merge_old_file(shared: Path, name: str) -> int:
    """Move the backlog of ``name``'s old own file into the shared one; returns the rows.

    The old rows get new seqs above every seq of the shared file, in their old order
    (so per-device order holds), owed to ``name`` only. The old file is then renamed
    ``<file>.merged-<time>``, never deleted. Blocking: run before the buffers open.
    """
    old = server_buffer_path(shared, name)
    if not old.is_file():
        return 0
    source = FrameStore(old)  # its rows were the whole file's: server "default" there
    source.open()
    target = FrameStore(shared, server=name)
    try:
        base = target.open().max_seq
        after, moved = -(2**63), 0
        while True:
            batch = source.read_more(after, 2000)
            if batch.last_seq is None:
                break
            after = batch.last_seq
            target.append_many([dataclasses.replace(r, seq=base + moved + i + 1)
                                for i, r in enumerate(batch.records)])
            moved += len(batch.records)
        target.set_seq_high_water(base + moved)
    finally:
        target.close()
    source.move_aside("merged")
    log.warning("buffer_store_merged", server=name, rows=moved, old=str(old),
                shared=str(shared))
    return moved


async def serving(name: str, work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` with ``server=name`` on every line it logs (journal field ``SERVER``).

    A task runs in a copy of its creator's context, and socket callbacks registered
    from it keep that copy, so the binding reaches the link's whole life.
    """
    bind_contextvars(server=name)
    await work


async def open_serving(name: str, buffer: UplinkBuffer) -> None:
    """Open ``buffer`` in a task bound to ``server=name``, so its store worker logs with it."""
    await asyncio.create_task(serving(name, buffer.open()), name=f"open-{name}")


_MakeBuffer = Callable[["MqttUplinkSink | UdpUplinkSink"], UplinkBuffer]


@dataclass
class _Target:
    name: str
    route: RouteFilter
    buffer: UplinkBuffer
    routed: int = 0


class Router:
    """The radio loop's ``submit``: each uplink to every server whose filters match it.

    The edge checks already ran (once) before this point. Without any filter the
    stored frame is not even parsed.
    """

    def __init__(self, on_unrouted: Callable[[], None] | None = None) -> None:
        self._targets: list[_Target] = []
        self._filtering = False
        self._on_unrouted = on_unrouted
        """Told of each frame no server's filters accept (counted as the drop ``no_server``)."""
        self.unparsable = 0
        self.unrouted = 0

    def add(self, name: str, route: RouteFilter, buffer: UplinkBuffer) -> None:
        """Route to ``buffer`` too; every buffer added must share one ``SeqCounter``."""
        self._targets.append(_Target(name, route, buffer))
        self._filtering = self._filtering or bool(route.dev_addr_prefixes
                                                  or route.join_eui_prefixes)

    def routed(self) -> dict[str, int]:
        return {t.name: t.routed for t in self._targets}

    def submit(self, device: str, body: bytes, *, received_ns: int, monotonic_ns: int,
               clock_synced: bool) -> int:
        phy = self._phy(body) if self._filtering else b""
        seq = -1
        for target in self._targets:
            if phy and not target.route.accepts(phy):
                continue
            target.routed += 1
            s = target.buffer.submit(device, body, received_ns=received_ns,
                                     monotonic_ns=monotonic_ns, clock_synced=clock_synced,
                                     seq=None if seq < 0 else seq)
            seq = s if seq < 0 else seq
        if seq < 0:
            self.unrouted += 1
            if self._on_unrouted is not None:
                self._on_unrouted()
        return seq

    def _phy(self, body: bytes) -> bytes:
        frame = gw_pb2.UplinkFrame()
        try:
            frame.ParseFromString(body)
        except DecodeError:
            self.unparsable += 1  # reaches every server, as an unfilterable frame would
            return b""
        return bytes(frame.phy_payload)


@dataclass
class ExtraServer:
    """One ``[[server]]`` at run time."""

    section: ServerSection
    buffer: UplinkBuffer
    link: MqttLink | SemtechUdpLink
    udp_downlinks: UdpDownlinks | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    downlink_statuses: Counter[str] = field(default_factory=Counter)
    changed_at: float = field(default_factory=time.monotonic)
    """When an MQTT server's connection last went up or down (UDP links keep their own)."""

    def snapshot(self) -> dict[str, Any]:
        buf = self.buffer.stats()
        if isinstance(self.link, MqttLink):
            up = self.link.connected
            link = {"protocol": "chirpstack_mqtt", "server": self.section.url,
                    "state": "up" if up else "down",
                    "down_for_s": None if up else round(time.monotonic() - self.changed_at, 1)}
            statuses = dict(self.downlink_statuses)
        else:
            link = self.link.snapshot()
            statuses = dict(self.udp_downlinks.statuses) if self.udp_downlinks else {}
        return {**link, "downlinks_allowed": self.section.downlinks,
                "downlink_statuses": statuses,
                "backlog": buf.depth, "oldest_age_s": buf.oldest_age_s,
                "delivered": buf.acked, "dropped": dict(buf.dropped),
                "storage_ok": buf.storage_ok}


class ExtraServers:
    """Builds, runs and stops every ``[[server]]`` (server ``default`` stays in the daemon)."""

    def __init__(self, *, sections: tuple[ServerSection, ...], gateway_id: str,
                 buffer_config: BufferConfig, downlink: DownlinkPath, boot_id: str,
                 clock_synced: Callable[[], bool], max_eirp_dbm: int,
                 seqs: SeqCounter | None = None) -> None:
        """``seqs``: the default server's buffer's counter (its file is the shared one)."""
        self.servers: list[ExtraServer] = []
        self._gateway_id = gateway_id
        self._router: Router | None = None
        self._path = buffer_config.path
        shared = seqs if seqs is not None else SeqCounter()
        for s in sections:
            def buffer(sink: MqttUplinkSink | UdpUplinkSink, name: str = s.name) -> UplinkBuffer:
                return UplinkBuffer(buffer_config, sink, boot_id=boot_id,
                                    clock_synced=clock_synced, seqs=shared,
                                    store_factory=lambda p: FrameStore(p, server=name))
            if s.protocol == "semtech_udp":
                self.servers.append(self._udp(s, buffer, gateway_id, downlink, max_eirp_dbm))
            else:
                self.servers.append(self._mqtt(s, buffer, gateway_id, downlink))

    def mqtt_links(self) -> list[MqttLink]:
        """The links of the MQTT servers (the radio loop holds their writes per batch)."""
        return [s.link for s in self.servers if isinstance(s.link, MqttLink)]

    @staticmethod
    def _udp(s: ServerSection, make: _MakeBuffer, gateway_id: str, downlink: DownlinkPath,
             power: int) -> ExtraServer:
        # Here, not at the top: a daemon without a Semtech UDP server never needs them,
        # and every module it imports stays in its memory.
        from gateway.udp_uplink_sink import UdpUplinkSink
        from packet_forwarder.semtech_udp.downlink import UdpDownlinks
        from packet_forwarder.semtech_udp.link import SemtechUdpLink, UdpSettings

        link = SemtechUdpLink(UdpSettings.from_url(s.url, keepalive_s=s.keepalive_s),
                              bytes.fromhex(gateway_id), name=s.name)
        sink = UdpUplinkSink(link)
        buffer = make(sink)
        sink.ready_callback = buffer.sink_ready
        server = ExtraServer(s, buffer, link)
        if s.downlinks:
            def decide(payload: bytes) -> TxStatus | None:
                result = downlink.handle_down(payload, reply=lambda _r: None)
                return result.outcomes[0].status if result.outcomes else None

            server.udp_downlinks = UdpDownlinks(link, gateway_id=gateway_id,
                                                now=downlink.clock.now, decide=decide,
                                                default_power_dbm=power)
        return server

    @staticmethod
    def _mqtt(s: ServerSection, make: _MakeBuffer, gateway_id: str,
              downlink: DownlinkPath) -> ExtraServer:
        m = s.mqtt
        assert m is not None  # read_servers sets it for chirpstack_mqtt
        topics = Topics(m.topic_prefix, gateway_id)
        holder: list[ExtraServer] = []

        def on_command(name: str, payload: bytes) -> None:
            if name != "down" or not s.downlinks:
                log.info("command_ignored", server=s.name, command=name, size=len(payload),
                         reason="downlinks = false" if name == "down" else "not supported")
                return
            downlink.handle_down(payload, reply=lambda r: reply(r))

        def reply(result: DownlinkResult) -> None:
            for o in result.outcomes:
                holder[0].downlink_statuses[o.status.name] += 1
            ack = result.ack_payload()
            if ack is not None and not link.publish(topics.event("ack"), ack, qos=1):
                log.warning("downlink_ack_not_sent", server=s.name,
                            downlink_id=result.downlink_id, reason="backhaul down")

        settings = MqttSettings(server=m.server, username=m.username, password=m.password,
                                ca_cert=m.ca_cert, client_cert=m.client_cert,
                                client_key=m.client_key, keepalive_s=m.keepalive_s,
                                client_id=f"{gateway_id}-{s.name}", max_inflight=m.max_inflight)
        def changed(up: bool) -> None:
            holder[0].changed_at = time.monotonic()
            log.info("server_connection", server=s.name, up=up)

        link = MqttLink(settings, topics, on_command=on_command, marshaler=m.marshaler,
                        on_connection_change=changed)
        sink = MqttUplinkSink(link, topics, m.marshaler)
        buffer = make(sink)
        sink.ready_callback = buffer.sink_ready
        holder.append(ExtraServer(s, buffer, link))
        return holder[0]

    def add_routes(self, router: Router) -> None:
        self._router = router
        for server in self.servers:
            router.add(server.section.name, server.section.route, server.buffer)

    async def open(self) -> None:
        """Merge any old per-server file, then open every buffer (replaying its backlog)
        before the radio starts. After the default server's buffer: it made the file."""
        for server in self.servers:
            name = server.section.name
            try:
                await asyncio.to_thread(merge_old_file, self._path, name)
            except Exception as exc:  # the old file stays where it is, for a later start
                log.error("buffer_store_merge_failed", server=name, error=str(exc))
            await open_serving(name, server.buffer)

    def start(self) -> None:
        for server in self.servers:
            name = server.section.name
            server.tasks.append(asyncio.create_task(serving(name, server.link.run()),
                                                    name=f"server-{name}"))
            stats = (self._mqtt_stats(server) if isinstance(server.link, MqttLink)
                     else self._udp_stats(server))
            server.tasks.append(asyncio.create_task(serving(name, stats), name=f"stat-{name}"))

    async def close(self) -> None:
        """After the radio stopped: persist each backlog, then say goodbye on each link."""
        for server in self.servers:
            await server.buffer.close()
        for server in self.servers:
            await server.link.stop()
            for task in server.tasks:
                task.cancel()
            await asyncio.gather(*server.tasks, return_exceptions=True)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {s.section.name: s.snapshot() for s in self.servers}

    def _routed(self, server: ExtraServer) -> int:
        router = self._router
        return 0 if router is None else router.routed().get(server.section.name, 0)

    async def _mqtt_stats(self, server: ExtraServer) -> None:
        """``event/stats`` describing this server's traffic: frames routed to it, its downlinks."""
        link, m = server.link, server.section.mqtt
        assert isinstance(link, MqttLink) and m is not None
        topic = Topics(m.topic_prefix, self._gateway_id).event("stats")
        while True:
            await asyncio.sleep(m.stats_interval_s)
            routed = self._routed(server)
            counters = UplinkCounters(rx_received=routed, rx_ok=routed, forwarded=routed)
            msg = build_stats(self._gateway_id, counters, server.buffer.stats())
            statuses = server.downlink_statuses
            msg.tx_packets_received = sum(statuses.values())
            msg.tx_packets_emitted = statuses.get("OK", 0)
            for status, n in statuses.items():
                msg.tx_packets_per_status[status] = n
            msg.metadata["server"] = server.section.name
            link.publish(topic, marshal(msg, m.marshaler), qos=0)

    async def _udp_stats(self, server: ExtraServer) -> None:
        """PUSH_DATA ``stat`` (§4) describing this server's own traffic, sent unacknowledged."""
        link = server.link
        assert not isinstance(link, MqttLink)
        while True:
            await asyncio.sleep(server.section.stats_interval_s)
            buf = server.buffer.stats()
            statuses = server.udp_downlinks.statuses if server.udp_downlinks else {}
            routed = self._routed(server)
            stat = {"time": time.strftime("%Y-%m-%d %H:%M:%S GMT", time.gmtime()),
                    "rxnb": routed, "rxok": routed, "rxfw": buf.acked,
                    "ackr": link.ack_ratio(), "dwnb": link.counters.pull_resp,
                    "txnb": statuses.get("NONE", 0)}
            with contextlib.suppress(OSError):
                link.push_once({"stat": stat})


__all__ = ["DEFAULT_NAME", "ExtraServers", "Router", "merge_old_file", "open_serving",
           "server_buffer_path", "serving"]
