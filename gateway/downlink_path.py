"""The downlink half of the daemon: ``command/down`` → TX queue → chip, and ``command/config``.

The decisions (checks, timing, duty cycle, the just-in-time queue) live in
``packet_forwarder.downlink`` and are pure; this module only wires them to the
running gateway, respecting its one rule: every SPI call happens on the radio
thread. So the split is:

- loop thread: decode and decide a ``command/down`` (pure CPU), publish its ack,
  and set a timer for the moment the queued packet becomes due;
- radio thread: :meth:`DownlinkPath.service_radio`, run by the radio loop after
  each ``receive()`` in the same executor job (and by that timer, so a packet is
  loaded when it is due, not up to one poll interval later). It reads the
  counter when something needs it (see ``COUNTER_REFRESH_S``), hands due packets
  to the chip while its one TX slot is free, and reports each to the handler.

A ``command/config`` plan restarts the concentrator on the radio thread; the
restart begins a new counter session (the counter restarts on real hardware), so
queued packets are dropped and later answers to older uplinks are TOO_LATE. An
accepted plan is written atomically to a JSON file and used at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from chirpstack_api.common import common_pb2
from chirpstack_api.gw import gw_pb2

from gateway import __version__
from gateway.class_b import ClassB
from gateway.config import Config
from gateway.radio_loop import RadioSession
from hal.errors import HalError
from hal.interface import Concentrator
from hal.lbt import ChannelBusyError
from hal.types import ChannelPlan, TxState
from packet_forwarder.chirpstack import marshal
from packet_forwarder.downlink import (
    CounterClock,
    DownlinkHandler,
    DownlinkResult,
    DutyCycle,
    JitConfig,
    JitQueue,
    QueueItem,
    TxLimits,
)
from packet_forwarder.downlink.config_cmd import (
    parse_gateway_configuration,
    plan_from_dict,
    plan_to_dict,
)
from packet_forwarder.downlink.jit import signed_delta
from packet_forwarder.downlink.stats import fill_tx_stats
from packet_forwarder.regions.model import Region

log = structlog.get_logger(__name__)

PLAN_FILE_NAME = "channel-plan.json"
KICK_SLACK_S = 0.001
"""The due-timer fires this long after the computed moment, so the packet is surely due."""

COUNTER_REFRESH_S = 1.0
"""The longest an idle gateway goes without reading the counter (see :meth:`service_radio`).

Between readings :class:`CounterClock` extrapolates with the host's monotonic clock, which
is what a ``command/down`` decision sees. The error is the rate difference between the
chip's crystal (±20 ppm at worst) and CLOCK_MONOTONIC (the kernel slews it by at most
500 ppm; NTP keeps it to tens of ppm in practice), so at most ~0.52 ms after 1 s and
typically a few tens of µs: far below the scheduling margins (``min_lead_ms`` 30,
``load_margin_ms`` 40, ``guard_ms`` 45 by default), and a queued packet is loaded against
a fresh reading anyway (every poll while one is queued). An idle read costs ~45 µs of
Python on the emulator; at 10 a second (the earlier 100 ms) that was 0.05 % of a core for
an accuracy nothing used. The wrap trackers need far less (a reading every 134 s for
the chip's 27-bit count, every 35 min for the 32-bit wrap count), and so does the SX1303's
PPS history (one reading per PPS second)."""

GPS_POLL_S = 0.05
"""How often class B reads the GPS receiver while a time message may come: often enough
that each NAV-TIMEGPS is paired with the PPS latch of its own second (the message arrives
well within the second after its edge, and the latch holds until the next edge), rarely
enough that an idle gateway does not make a serial read at every 10 ms poll."""

GPS_QUIET_AFTER_PAIR_S = 0.85
"""After a poll that paired a new GPS second, the receiver is not read for this long.

A receiver sends its time message once per second at the same point of the second (after
the PPS edge, when its navigation solution is done; the NMEA sentences come in the same
burst), so for most of the second there is nothing to pair. Reading again 0.85 s after
the message was *read* (i.e. up to ``GPS_POLL_S`` after it arrived), then every
``GPS_POLL_S`` until the next one, still reads each message within ``GPS_POLL_S`` of its
arrival, before the next edge overwrites the latch, while its arrival may shift by up to
~0.15 s from second to second. Unlocked, or with the messages late, the cadence stays
``GPS_POLL_S``. This cuts the serial reads of a locked gateway from 20 to about 4 a
second; bytes wait meanwhile in the kernel's UART buffer (a second of 9600 baud is
960 bytes, and the read takes up to 512 at a time)."""

Publish = Callable[[str, bytes], bool]


class _StructlogBridge(logging.Handler):
    """Sends the downlink core's stdlib log records to the daemon's structlog output.

    The core logs with the standard library (it is a library); without this its
    warnings would reach stderr unformatted, or not at all.
    """

    def emit(self, record: logging.LogRecord) -> None:
        level = record.levelname.lower()
        method = getattr(log, level if level in ("debug", "info", "warning", "error") else "info")
        method("downlink", detail=record.getMessage())


def bridged_logger() -> logging.Logger:
    """A private (unregistered) stdlib logger whose records go to structlog."""
    logger = logging.Logger("gateway.downlink")
    logger.propagate = False
    logger.addHandler(_StructlogBridge())
    return logger


# --- the persisted channel plan ----------------------------------------------------------------


class PlanStore:
    """The channel plan last accepted from ``command/config``, as one JSON file.

    Written to a temporary file, fsynced and renamed over the old one, so a power
    cut leaves either the old plan or the new one, never half of one.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, region: Region) -> tuple[ChannelPlan, str] | None:
        """The stored plan and its version; None (with a log line) when absent or unusable."""
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.error("channel_plan_unreadable", path=str(self.path), error=str(exc))
            return None
        try:
            if raw.get("region") != region.name:
                raise ValueError(f"stored for region {raw.get('region')!r}, not {region.name}")
            plan, version = plan_from_dict(raw)
            low, high = region.band_hz
            if any(not low <= c.frequency_hz <= high for c in plan.all_channels()):
                raise ValueError(f"a channel is outside {region.name}")
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            log.error("channel_plan_unusable", path=str(self.path), error=str(exc))
            return None
        return plan, version

    def save(self, plan: ChannelPlan, version: str, region: Region) -> None:
        """Replace the stored plan atomically; raises ``OSError``."""
        data = {"region": region.name, **plan_to_dict(plan, version)}
        tmp = self.path.with_name(self.path.name + ".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, json.dumps(data, indent=1).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def plan_store_for(config: Config) -> PlanStore:
    return PlanStore(config.downlink.plan_file or config.buffer.path.parent / PLAN_FILE_NAME)


@dataclass(frozen=True)
class StartPlan:
    plan: ChannelPlan
    version: str
    source: str
    """"persisted" (from an earlier ``command/config``) or "region" (the region's default)."""


def start_plan(config: Config, region: Region, store: PlanStore) -> StartPlan:
    """A persisted plan takes precedence over the region's default one."""
    stored = store.load(region)
    if stored is not None:
        return StartPlan(stored[0], stored[1], "persisted")
    return StartPlan(region.default_channel_plan(config.concentrator.sub_band), "", "region")


def jit_config(config: Config) -> JitConfig:
    d = config.downlink
    return JitConfig(load_margin_us=d.load_margin_us, min_lead_us=d.min_lead_us,
                     max_advance_us=d.max_advance_us, guard_us=d.guard_us,
                     immediate_lead_us=d.immediate_lead_us, capacity=d.queue_capacity)


# --- the path itself ---------------------------------------------------------------------------


class DownlinkPath:
    """Owns the downlink handler, TX queue, duty cycle and counter clock of one gateway."""

    def __init__(self, *, config: Config, region: Region, gateway_id: str,
                 concentrator: Concentrator, radio_executor: Executor, session: RadioSession,
                 publish_ack: Publish, ack_topic: str, plan_store: PlanStore,
                 running_plan: StartPlan, max_conducted_dbm: int | None,
                 power_steps_dbm: tuple[int, ...] = (),
                 on_loaded: Callable[[QueueItem], None] | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.region = region
        self.queue = JitQueue(jit_config(config))
        self.duty_cycle = DutyCycle(region, monotonic)
        self.clock = CounterClock(monotonic)
        self._monotonic = monotonic
        self._observed_at = 0.0
        self._observed_session: int | None = None
        """When and in which session :meth:`service_radio` last read the counter."""
        self._gps_due = float("-inf")
        """When :meth:`service_radio` next reads the GPS receiver (class B)."""
        listening = bool(getattr(concentrator, "listen_before_talk", False))
        self.handler = DownlinkHandler(
            gateway_id=gateway_id, region=region, queue=self.queue, duty_cycle=self.duty_cycle,
            limits=TxLimits(config.downlink.antenna_gain_dbi, max_conducted_dbm,
                            listen_before_talk=listening,
                            refuse_without_lbt=config.concentrator.lbt.refuse_without,
                            power_steps_dbm=power_steps_dbm),
            log=bridged_logger())
        self._ack_encoding: dict[int, str] = {}
        """Encoding of each queued downlink's request, for a later LBT-busy ack."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._gateway_id = gateway_id
        self._conc = concentrator
        self._executor = radio_executor
        self._session = session
        self._publish_ack = publish_ack
        self._ack_topic = ack_topic
        self._store = plan_store
        self.plan = running_plan.plan
        self.config_version = running_plan.version
        self._on_loaded = on_loaded
        self._timers: set[asyncio.TimerHandle] = set()
        self._kick_pending = False
        self._closed = False
        self._config_lock = asyncio.Lock()
        self.class_b: ClassB | None = None
        """GPS time and beacons, set by the daemon when a GPS source is configured."""
        self._configured_position = (config.class_b.latitude, config.class_b.longitude)

    # -- radio thread ---------------------------------------------------------------------

    def service_radio(self) -> None:
        """Radio thread: refresh the counter clock and load the packet now due, if any.

        Runs after every poll, but reads the counter (two or three SPI reads) only when
        something needs it now: a packet is queued (its load time is decided against a
        fresh reading, every poll), class B has a new GPS second (beacons are queued
        against the counter), the concentrator session is new (the clock was reset), or
        the last reading is ``COUNTER_REFRESH_S`` old. Class B reads the receiver every
        ``GPS_POLL_S``, but not for ``GPS_QUIET_AFTER_PAIR_S`` after a new second was
        paired. An idle locked gateway thus reads the counter about twice a second (the
        refresh, and the new GPS second for the beacons) and the GPS about 4 times,
        instead of 100 each.
        """
        session = self._session
        now = self._monotonic()
        class_b = self.class_b
        beacons_due = False
        if class_b is not None and now >= self._gps_due:
            paired = class_b.paired_seconds
            beacons_due = class_b.poll_receiver()
            quiet = GPS_QUIET_AFTER_PAIR_S if class_b.paired_seconds != paired else GPS_POLL_S
            self._gps_due = now + quiet
        if (not len(self.queue) and not beacons_due
                and self._observed_session == session.session_id
                and now - self._observed_at < COUNTER_REFRESH_S):
            return
        try:
            count = self._conc.counter_us()
        except HalError as exc:
            log.error("concentrator_counter_failed", error=str(exc))
            return
        self._observed_at = self._monotonic()
        self._observed_session = session.session_id
        self.clock.observe(count, session.session_id, session.epoch.observe(count))
        if beacons_due and class_b is not None:
            class_b.queue_beacons(count)
        if not len(self.queue):
            return
        try:
            free = self._conc.tx_state() is TxState.FREE
        except HalError as exc:
            log.error("concentrator_tx_state_failed", error=str(exc))
            free = False
        for item in self.handler.due(count, tx_free=free):
            self._load(item, count)

    def _load(self, item: QueueItem, count: int) -> None:
        packet = item.packet
        encoding = self._ack_encoding.pop(item.downlink_id, None)
        try:
            self._conc.send(packet)
        except ChannelBusyError as exc:
            log.warning("downlink_channel_busy", downlink_id=item.downlink_id, error=str(exc))
            self._publish_busy(item, encoding)
            return
        except HalError as exc:
            log.error("downlink_load_failed", downlink_id=item.downlink_id, error=str(exc))
            self.handler.tx_result(item, False, "hal_error")
            return
        self.handler.tx_result(item, True)
        log.info("downlink_loaded", downlink_id=item.downlink_id, kind=item.kind.value,
                 count_us=packet.count_us, frequency=packet.frequency_hz,
                 sf=packet.spreading_factor, power_dbm=packet.power_dbm, toa_us=item.toa_us,
                 lead_us=signed_delta(packet.count_us, count))
        if self._on_loaded is not None:
            self._on_loaded(item)

    def _publish_busy(self, item: QueueItem, encoding: str | None) -> None:
        """Radio thread: retire the packet and send the follow-up ack from the loop thread."""
        ack = self.handler.channel_busy(item)
        if encoding is None or self._loop is None:
            return  # a beacon, or no request to answer
        payload = marshal(ack, encoding)

        def publish() -> None:
            if not self._publish_ack(self._ack_topic, payload):
                log.warning("downlink_ack_not_sent", downlink_id=item.downlink_id,
                            reason="backhaul down")

        self._loop.call_soon_threadsafe(publish)

    # -- loop thread ----------------------------------------------------------------------

    def handle_down(self, payload: bytes,
                    reply: Callable[[DownlinkResult], None] | None = None) -> DownlinkResult:
        """Loop thread: decide one ``command/down``, answer it, arm the load timer.

        ``reply`` answers the server that asked when it is not server ``default``
        (another broker, or a Semtech UDP server's TX_ACK); the queue is the same.
        """
        now = self.clock.now()
        self._loop = asyncio.get_running_loop()
        result = self.handler.handle(payload, now)
        if result.scheduled is not None and result.downlink_id is not None:
            self._ack_encoding[result.downlink_id] = result.encoding
        ack = result.ack_payload()
        if reply is not None:
            reply(result)
        elif ack is not None and not self._publish_ack(self._ack_topic, ack):
            log.warning("downlink_ack_not_sent", downlink_id=result.downlink_id,
                        reason="backhaul down")
        if result.scheduled is not None and now is not None:
            lead_us = signed_delta(result.scheduled.start, now.count_us)
            self._kick_at((lead_us - self.queue.config.load_margin_us) / 1e6 + KICK_SLACK_S)
        return result

    def _kick_at(self, delay_s: float) -> None:
        """Run :meth:`service_radio` on the radio thread once the packet is due."""
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            if handle is not None:
                self._timers.discard(handle)
            self._kick()

        handle = loop.call_later(max(0.0, delay_s), fire)
        self._timers.add(handle)

    def _kick(self) -> None:
        if self._closed or self._kick_pending:
            return
        self._kick_pending = True
        future = asyncio.get_running_loop().run_in_executor(self._executor, self.service_radio)

        def done(f: asyncio.Future[None]) -> None:
            self._kick_pending = False
            if not f.cancelled() and f.exception() is not None:
                log.error("downlink_service_failed", error=repr(f.exception()))

        future.add_done_callback(done)

    async def handle_config(self, payload: bytes) -> float | None:
        """Loop thread: apply a ``command/config`` plan; returns the stats interval it carries."""
        result = parse_gateway_configuration(payload, self.region, self._gateway_id,
                                             fits=self._conc.check_plan)
        if result.plan is None:
            log.warning("config_refused", version=result.version, error=result.error,
                        keeping=self.config_version or "region default")
            return result.stats_interval_s
        async with self._config_lock:
            if result.plan == self.plan:
                self._set_version(result.plan, result.version)
                return result.stats_interval_s
            loop = asyncio.get_running_loop()
            error = await loop.run_in_executor(self._executor, self._restart, result.plan)
            if error is not None:
                log.error("config_apply_failed", version=result.version, error=error,
                          keeping=self.config_version or "region default")
                return result.stats_interval_s
            self.plan = result.plan
            self._set_version(result.plan, result.version, new_plan=True)
            channels = sorted(c.frequency_hz for c in result.plan.all_channels())
            log.info("config_applied", version=result.version, channels=channels)
        return result.stats_interval_s

    def _set_version(self, plan: ChannelPlan, version: str, *, new_plan: bool = False) -> None:
        """Save what runs: a new plan is saved even under the running version string."""
        if version == self.config_version and not new_plan:
            return
        self.config_version = version
        try:
            self._store.save(plan, version, self.region)
        except OSError as exc:
            log.error("channel_plan_not_saved", path=str(self._store.path), error=str(exc))

    def _restart(self, plan: ChannelPlan) -> str | None:
        """Radio thread: start the chip on ``plan`` (or back on the old one); None when it took."""
        try:
            self._conc.start(plan)
        except HalError as exc:
            with contextlib.suppress(HalError):
                self._conc.start(self.plan)
            self._new_session()
            return str(exc)
        self._new_session()
        return None

    def _new_session(self) -> None:
        """The counter restarted: nothing queued can be timed any more."""
        self._session.renew()
        self.handler.reset_session()
        self.clock.reset()
        if self.class_b is not None:
            self.class_b.reset()

    # -- stats, status, shutdown ----------------------------------------------------------

    def fill_stats(self, msg: gw_pb2.GatewayStats) -> None:
        fill_tx_stats(msg, self.handler.counters, self.duty_cycle, self.region)
        # ChirpStack pushes command/config only to gateways whose stats metadata has
        # "concentratord_version", and only when metadata "config_version" differs from
        # its channel-plan hash (chirpstack src/uplink/stats.rs update_gateway_configuration);
        # Concentratord sets both (chirpstack-concentratord-sx1302 src/cmd/root.rs).
        msg.metadata["concentratord_version"] = __version__
        msg.metadata["config_version"] = self.config_version
        self._fill_location(msg)
        if self.class_b is not None:
            msg.metadata["gps_locked"] = "true" if self.class_b.locked else "false"
            msg.metadata["beacons_queued"] = str(self.class_b.counters.beacons_queued)
            for status, n in self.class_b.counters.beacons_refused.items():
                msg.metadata[f"beacons_refused_{status.lower()}"] = str(n)
        msg.config_version = self.config_version

    def _fill_location(self, msg: gw_pb2.GatewayStats) -> None:
        """The GPS fix when there is one, else the configured position (if set)."""
        fix = None if self.class_b is None else self.class_b.position()
        if fix is not None:
            lat, lon, alt = fix
            source = common_pb2.LocationSource.Value("GPS")
        elif self._configured_position != (0.0, 0.0):
            (lat, lon), alt = self._configured_position, 0.0
            source = common_pb2.LocationSource.Value("CONFIG")
        else:
            return
        msg.location.latitude, msg.location.longitude = lat, lon
        msg.location.altitude, msg.location.source = alt, source

    def snapshot(self) -> dict[str, Any]:
        c = self.handler.counters
        return {"received": c.received, "emitted": c.emitted, "queued": len(self.queue),
                "power_clamped": c.power_clamped,
                "statuses": dict(c.per_status), "dropped": dict(c.dropped),
                "config_version": self.config_version,
                "class_b": self.class_b.snapshot() if self.class_b is not None else {}}

    def close(self) -> None:
        self._closed = True
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
