"""The daemon's wiring: one asyncio event loop, one radio thread, one SQLite thread.

Start order matters: the store opens (and replays its backlog) before the radio
starts, so nothing received can outrun what was kept from before; on stop the
radio stops first, then the buffer persists everything unacknowledged, then the
MQTT link says OFFLINE. SIGINT and SIGTERM both take that clean path.
The concentrator starts on the plan last accepted from ``command/config`` if one
was kept, else on the region's default plan; downlinks go through
:class:`gateway.downlink_path.DownlinkPath`.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import structlog

from buffer.uplink_buffer import BufferConfig, SeqCounter, UplinkBuffer
from gateway import __version__
from gateway.class_b import build_class_b
from gateway.clock import boot_id, clock_synchronised
from gateway.config import Config
from gateway.counters import UplinkCounters
from gateway.downlink_path import DownlinkPath, StartPlan, plan_store_for, start_plan
from gateway.edge_stage import EdgeStage
from gateway.log import RateLimiter
from gateway.radio import radio_settings
from gateway.radio_loop import RadioLoop, RadioSession, Submit
from gateway.radio_thread import RadioThread
from gateway.servers import DEFAULT_NAME, ExtraServers, Router, open_serving, serving
from gateway.service_hooks import ServiceHooks
from gateway.start_faults import EXIT_START_FAULT, describe_start_fault
from gateway.stats_publisher import StatsPublisher
from gateway.status_fields import duty_cycle_use
from gateway.status_server import default_status_socket
from gateway.uplink_sink import MqttUplinkSink
from hal.backends import Radio, open_radio
from hal.errors import HalError
from hal.interface import Concentrator
from packet_forwarder.keystore import KeyStoreError
from packet_forwarder.mqtt_link import MqttLink, MqttSettings
from packet_forwarder.regions import Region, RegionError, load_region
from packet_forwarder.topics import Topics

if TYPE_CHECKING:
    from gateway.sim.site import SimSite

log = structlog.get_logger(__name__)


def _sim_site(config: Config, radio: Radio) -> SimSite | None:
    """The simulator wing, imported only when the radio door handed back an emulator, so a
    gateway on real hardware never loads the emulator's modules."""
    if radio.emulator is None:
        return None
    from gateway.sim.site import SimSite

    return SimSite(config, radio.emulator)


def _start_concentrator(conc: Concentrator, config: Config, region: Region) -> StartPlan:
    """Radio thread: start on the kept plan, falling back to the region's default one."""
    chosen = start_plan(config, region, plan_store_for(config))
    try:
        conc.start(chosen.plan)
    except HalError as exc:
        if chosen.source == "region":
            raise
        log.error("channel_plan_refused_by_radio", version=chosen.version, error=str(exc))
        chosen = StartPlan(region.default_channel_plan(config.concentrator.sub_band), "", "region")
        conc.start(chosen.plan)
    log.info("channel_plan", source=chosen.source, version=chosen.version, region=region.name)
    return chosen


def _mqtt_settings(config: Config, gateway_id: str) -> MqttSettings:
    m = config.mqtt
    return MqttSettings(
        server=m.server,
        username=m.username,
        password=m.password,
        ca_cert=m.ca_cert,
        client_cert=m.client_cert,
        client_key=m.client_key,
        keepalive_s=m.keepalive_s,
        client_id=gateway_id,
        max_inflight=m.max_inflight,
    )


def _buffer_config(config: Config) -> BufferConfig:
    b = config.buffer
    return BufferConfig(
        path=b.path,
        commit_interval_s=b.commit_interval_s,
        max_bytes=int(b.max_size_mb * 1024 * 1024),
        max_age_s=b.max_age_days * 86400,
        drain_rate_per_s=b.drain_rate_per_s,
        memory_max_records=b.memory_max_records,
    )


class DaemonStartError(Exception):
    """The gateway cannot start (already logged); the process exits non-zero."""


class Daemon:
    """Owns every long-lived object of a running gateway."""

    def __init__(self, config: Config, limiter: RateLimiter | None = None, *,
                 on_uplink: Callable[[bytes], None] | None = None) -> None:
        self.config = config
        self._limiter = limiter
        self._on_uplink = on_uplink
        """Called with each uplink's ``UplinkFrame`` bytes as it enters the buffer (the demo)."""
        self.summary: dict[str, int] = {}
        """Totals after a clean stop: received, delivered (broker-acknowledged), kept."""
        self._started = time.monotonic()
        self._gateway_id = ""
        self.counters = UplinkCounters()
        self._stop = asyncio.Event()
        self._radio_executor = RadioThread()
        self._background: set[asyncio.Task[None]] = set()
        self.radio: Radio | None = None
        """The opened radio (tests reach the emulated chip as ``radio.emulator``)."""
        self.downlink: DownlinkPath | None = None

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
        try:
            region = load_region(self.config.concentrator.region)
        except RegionError as exc:
            log.error("region_unusable", error=str(exc))
            raise DaemonStartError(str(exc)) from exc
        try:
            radio = await loop.run_in_executor(self._radio_executor, open_radio,
                                               radio_settings(self.config))
            conc = radio.concentrator
            self.radio = radio
            plan = await loop.run_in_executor(self._radio_executor, _start_concentrator, conc,
                                              self.config, region)
        except (HalError, ImportError, OSError, ValueError) as exc:
            fault, fix = describe_start_fault(exc)
            log.error("start_failed", fault=fault, fix=fix)
            raise DaemonStartError(fault) from exc
        site = _sim_site(self.config, radio)
        eui = await loop.run_in_executor(self._radio_executor, conc.eui)
        gateway_id = self.config.gateway.id or eui.hex()
        session = RadioSession()
        log.info("gateway_identity", backend=self.config.concentrator.backend,
                 eui=eui.hex(), gateway_id=gateway_id, session=f"{session.session_id:08x}")

        edge = EdgeStage(self.config, site.sessions if site is not None else ())
        try:
            edge_filter = await edge.open(gateway_id)
        except (KeyStoreError, OSError, ValueError) as exc:
            log.error("keystore_open_failed", error=str(exc),
                      hint="check keys.store / keys.key_file (owner, mode 0600)")
            await edge.close()
            raise DaemonStartError(str(exc)) from exc
        self._edge = edge
        topics = Topics(self.config.mqtt.topic_prefix, gateway_id)
        self._topics = topics
        self._gateway_id = gateway_id
        hooks = ServiceHooks(
            status_socket=self.config.gateway.status_socket or default_status_socket(),
            snapshot=self.snapshot, backlog=lambda: buffer.stats().depth,
            disk_path=self.config.buffer.path, limiter=self._limiter)
        self._hooks = hooks
        link = MqttLink(_mqtt_settings(self.config, gateway_id), topics,
                        on_command=self._on_command, marshaler=self.config.mqtt.marshaler,
                        on_connection_change=hooks.backhaul_changed)
        self._link = link
        downlink = DownlinkPath(
            config=self.config, region=region, gateway_id=gateway_id, concentrator=conc,
            radio_executor=self._radio_executor, session=session,
            publish_ack=lambda topic, payload: link.publish(topic, payload, qos=1),
            ack_topic=topics.event("ack"), plan_store=plan_store_for(self.config),
            running_plan=plan, max_conducted_dbm=radio.max_conducted_dbm,
            power_steps_dbm=radio.power_steps_dbm,
            on_loaded=site.report_tx if site is not None else None)
        downlink.class_b = build_class_b(self.config, radio.open_gps, radio.board.name,
                                         downlink.handler, region, downlink.queue)
        self.downlink = downlink
        sink = MqttUplinkSink(link, topics, self.config.mqtt.marshaler)
        seqs = SeqCounter()  # one for the file every server's buffer shares
        buffer = UplinkBuffer(_buffer_config(self.config), sink, boot_id=boot_id(),
                              clock_synced=clock_synchronised, seqs=seqs)
        sink.ready_callback = buffer.sink_ready
        servers = ExtraServers(
            sections=self.config.servers, gateway_id=gateway_id,
            buffer_config=_buffer_config(self.config), downlink=downlink, boot_id=boot_id(),
            clock_synced=clock_synchronised, max_eirp_dbm=min(14, int(region.max_eirp_dbm)),
            seqs=seqs)
        router = Router(on_unrouted=lambda: self.counters.drop("no_server"))
        router.add(DEFAULT_NAME, self.config.mqtt.route, buffer)
        servers.add_routes(router)
        self._servers = servers
        await open_serving(DEFAULT_NAME, buffer)
        await servers.open()
        self._buffer = buffer

        if site is not None:
            await site.start()
        radio_loop = RadioLoop(
            conc, self._radio_executor, self._observed(router.submit),
            gateway_id=gateway_id, session=session,
            poll_interval_s=self.config.concentrator.poll_interval_s,
            forward_crc_error=self.config.forwarder.forward_crc_error,
            counters=self.counters,
            after_poll=site.after_poll if site is not None else None,
            on_alive=hooks.watchdog.radio_alive,
            edge_check=edge_filter.check,
            radio_service=downlink.service_radio,
            gps_time_at=downlink.class_b.gps_time_at if downlink.class_b is not None else None,
            links=[link, *servers.mqtt_links()],
        )
        stats = StatsPublisher(link, topics, gateway_id, self.counters, buffer,
                               interval_s=self.config.mqtt.stats_interval_s,
                               marshaler=self.config.mqtt.marshaler, downlink=downlink)
        self._stats = stats
        radio_task = asyncio.create_task(radio_loop.run(), name="radio")
        await hooks.start(is_healthy=lambda: not radio_task.done())
        hooks.ready("receiving; buffer open")
        link_task = asyncio.create_task(serving(DEFAULT_NAME, link.run()), name="mqtt")
        servers.start()
        side_tasks = [asyncio.create_task(stats.run(), name="stats"),
                      *(site.tasks if site is not None else ())]
        log.info("gateway_running", gateway_id=gateway_id, mqtt=self.config.mqtt.server,
                 buffer=str(self.config.buffer.path))
        try:
            await self._stop.wait()
        finally:
            log.info("stopping")
            await hooks.close()
            for task in side_tasks:
                task.cancel()
            radio_loop.stop()
            downlink.close()
            await asyncio.gather(radio_task, *side_tasks, *self._background,
                                 return_exceptions=True)
            await self._drain_radio(radio_loop, site)
            await buffer.close()
            kept = buffer.stats()
            self.summary = {"received": self.counters.rx_received, "delivered": kept.acked,
                            "kept": kept.depth, "dropped": kept.dropped_total}
            await servers.close()
            await edge.close()
            await link.stop()
            link_task.cancel()
            await asyncio.gather(link_task, return_exceptions=True)
            await loop.run_in_executor(self._radio_executor, conc.stop)
            self._radio_executor.shutdown(wait=True)
            log.info("stopped", received=self.counters.rx_received,
                     forwarded=self.counters.forwarded, delivered=self.summary["delivered"],
                     kept=self.summary["kept"], dropped=dict(self.counters.dropped))

    @staticmethod
    async def _drain_radio(radio_loop: RadioLoop, site: SimSite | None) -> None:
        """Take in what was already received (chip buffer, inject socket) before stopping."""
        if site is not None:
            site.drain_socket()
        while True:
            try:
                got = await radio_loop.poll_once()
            except HalError as exc:
                log.error("concentrator_receive_failed", error=str(exc))
                break
            if not got and (site is None or not site.pending()):
                break
        if site is not None:
            site.close()

    def _observed(self, submit: Submit) -> Submit:
        """``submit``, telling ``on_uplink`` of each frame first (only when one is set)."""
        observer = self._on_uplink
        if observer is None:
            return submit

        def observed(device: str, body: bytes, **timing: Any) -> int:
            observer(body)
            return submit(device, body, **timing)

        return observed

    def _on_command(self, name: str, payload: bytes) -> None:
        if name == "down" and self.downlink is not None:
            self.downlink.handle_down(payload)
            return
        if name == "keys":
            self._spawn(self._key_sync(payload), "key-sync")
            return
        if name == "config" and self.downlink is not None:
            self._spawn(self._apply_config(self.downlink, payload), "config")
            return
        # a warning, so the log limiter caps it: anyone who can publish can send these
        log.warning("command_ignored", command=name[:64], size=len(payload),
                    reason="not supported")

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _apply_config(self, downlink: DownlinkPath, payload: bytes) -> None:
        interval = await downlink.handle_config(payload)
        if interval is not None and interval >= 1.0:
            self._stats.interval_s = interval

    def snapshot(self) -> dict[str, Any]:
        """What ``lora-gateway status`` shows; no keys or passwords in it, ever."""
        buf = self._buffer.stats()
        drops: dict[str, int] = dict(self.counters.dropped)
        for reason, n in buf.dropped.items():
            drops[f"buffer_{reason}"] = n
        return {
            "version": __version__,
            "gateway_id": self._gateway_id,
            "uptime_s": round(time.monotonic() - self._started, 1),
            "concentrator": {"state": "running", "backend": self.config.concentrator.backend,
                             "received": self.counters.rx_received},
            "backhaul": {**self._hooks.backhaul_state(), "server": self.config.mqtt.server},
            "last_uplink": self.counters.last_uplink,
            "counts": {"received": self.counters.rx_received,
                       "forwarded": self.counters.forwarded},
            "duty_cycle": (duty_cycle_use(self.downlink.duty_cycle.usage())
                           if self.downlink is not None else {}),
            "buffer": {"depth": buf.depth, "oldest_age_s": buf.oldest_age_s,
                       "storage_ok": buf.storage_ok, "persisted_rows": buf.persisted_rows},
            "drops": drops,
            "edge": self._edge.filter.stats() if self._edge.filter else {},
            "downlink": self.downlink.snapshot() if self.downlink is not None else {},
            "servers": {DEFAULT_NAME: {
                "protocol": "chirpstack_mqtt", "server": self.config.mqtt.server,
                **self._hooks.backhaul_state(), "backlog": buf.depth,
                "oldest_age_s": buf.oldest_age_s, "delivered": buf.acked,
                "dropped": dict(buf.dropped)}, **self._servers.snapshot()},
        }

    async def _key_sync(self, payload: bytes) -> None:
        ack = await self._edge.handle_sync(payload)
        if ack is not None:
            self._link.publish(self._topics.event("keys-ack"), ack, qos=1)


def run_daemon(config: Config, limiter: RateLimiter | None = None) -> int:
    """Run until SIGINT/SIGTERM; returns the process exit code."""
    daemon = Daemon(config, limiter)
    try:
        asyncio.run(daemon.run())
    except KeyboardInterrupt:
        pass
    except DaemonStartError:
        return EXIT_START_FAULT  # logged; the unit does not restart on this status
    return 0
