"""The MQTT connection to the ChirpStack broker, driven from the asyncio event loop.

paho-mqtt does the protocol; this module owns the connection's life: connect,
say ONLINE, subscribe to commands, notice the line died, fail what was in
flight, wait a jittered back-off, try again. Design choices and why:

* Every paho call and callback runs on the event loop thread: the socket is
  watched with ``add_reader``/``add_writer`` and keep-alive runs in a small misc
  task. The one exception is the blocking TCP/TLS connect, run in an executor
  while that fresh client is not reachable from anywhere else; it is handed to
  the loop only once ``connect()`` has returned.
* A NEW paho client per connection. paho keeps unacknowledged QoS 1 messages and
  re-sends them (with DUP) after a reconnect, and may exceed its in-flight limit
  doing so. Our callers (the SQLite buffer) already hold every message until it is
  acknowledged, so a paho resend would be a hidden duplicate; dropping the client
  drops its session, and each in-flight publish is reported failed exactly once.
* Our own in-flight window (``max_inflight``), with paho's limit switched off, so
  ``publish`` either hands the message to the socket or refuses it: nothing waits
  in a paho queue where an outage could strand it.
* MQTT v5 by default, so a PUBACK's reason code can say "not accepted"
  (e.g. not authorised); v3.1.1 is available for old brokers.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from packet_forwarder.chirpstack import PROTOBUF, conn_state, marshal
from packet_forwarder.topics import Topics

log = structlog.get_logger(__name__)

ResultCallback = Callable[[bool], None]
_SCHEMES = {"mqtt": False, "tcp": False, "mqtts": True, "ssl": True, "tls": True}
_MAX_WINDOW = 60_000  # well below paho's 65,535 message ids per connection


class MqttSettingsError(ValueError):
    """The MQTT settings cannot work (bad URL, window size, back-off bounds)."""


@dataclass(frozen=True)
class MqttSettings:
    """How to reach the broker. ``client_id`` empty means "use the gateway id"."""

    server: str = "mqtt://127.0.0.1:1883"
    username: str | None = None
    password: str | None = None
    ca_cert: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    keepalive_s: int = 30
    """Also bounds half-open detection: a dead line is noticed after 1-2 × keepalive."""
    client_id: str = ""
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    max_inflight: int = 100
    connect_timeout_s: float = 10.0
    """Bounds the TCP/TLS connect and, separately, the wait for CONNACK."""
    stop_timeout_s: float = 3.0
    """How long ``stop()`` waits for the OFFLINE state's PUBACK and the disconnect."""
    protocol: Literal["5", "3.1.1"] = "5"

    def __post_init__(self) -> None:
        self.endpoint()  # fail at configuration time, not at the first connect
        if not 1 <= self.max_inflight <= _MAX_WINDOW:
            raise MqttSettingsError(f"max_inflight must be 1..{_MAX_WINDOW}")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            raise MqttSettingsError("need 0 < reconnect_min_s <= reconnect_max_s")
        if self.keepalive_s < 1 or self.connect_timeout_s <= 0:
            raise MqttSettingsError("keepalive_s and connect_timeout_s must be positive")

    def endpoint(self) -> tuple[bool, str, int]:
        """``(tls, host, port)`` from ``mqtt://host[:port]`` or ``mqtts://host[:port]``."""
        parts = urlsplit(self.server)
        tls = _SCHEMES.get(parts.scheme)
        try:
            port = parts.port
        except ValueError as exc:
            raise MqttSettingsError(f"bad port in MQTT server {self.server!r}") from exc
        if tls is None or not parts.hostname:
            raise MqttSettingsError(
                f"MQTT server must look like mqtt://host:port, got {self.server!r}")
        return tls, parts.hostname, port or (8883 if tls else 1883)


class Backoff:
    """Exponential reconnect delays with jitter, so a fleet does not reconnect in step."""

    def __init__(self, min_s: float, max_s: float, rng: random.Random) -> None:
        self._min, self._max, self._rng = min_s, max_s, rng
        self._attempt = 0

    def reset(self) -> None:
        self._attempt = 0

    def next_delay(self) -> float:
        """A delay in ``[max(min, base/2), base]`` where base doubles per attempt up to max."""
        base = min(self._max, self._min * 2 ** min(self._attempt, 32))
        self._attempt += 1
        return self._rng.uniform(max(self._min, base / 2), base)


@dataclass
class _Session:
    """One TCP connection: its paho client and the futures that mark its phases."""

    client: mqtt.Client
    sock: Any
    connack: asyncio.Future[bool]
    ended: asyncio.Future[None]
    misc: asyncio.Task[None] | None = None
    accepted: bool = False
    fd: int = -1
    watched: bool = False
    """Watchers are keyed by fd number: remove them once, before the socket closes,
    so a reused number of someone else's socket is never touched."""


class MqttLink:
    """A self-healing MQTT connection speaking for one gateway."""

    def __init__(
        self, settings: MqttSettings, topics: Topics, *,
        on_command: Callable[[str, bytes], None],
        on_connection_change: Callable[[bool], None] | None = None,
        marshaler: str = PROTOBUF,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._topics = topics
        self._on_command = on_command
        self._on_connection_change = on_connection_change
        self._online = marshal(conn_state(topics.gateway_id, True), marshaler)
        self._offline = marshal(conn_state(topics.gateway_id, False), marshaler)
        self._rng = rng or random.Random()
        self._session: _Session | None = None
        self._connected = False
        self._pending: dict[int, ResultCallback | None] = {}
        self._ready_listeners: list[Callable[[], None]] = []
        self._ready_scheduled = False
        self._stopping = False
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._down_since = time.monotonic()
        self._up_since = 0.0

    # ----- public API -------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    def can_publish(self) -> bool:
        """True when connected and the in-flight window has room."""
        return self._connected and len(self._pending) < self._settings.max_inflight

    def add_ready_listener(self, listener: Callable[[], None]) -> None:
        """Called (on the loop) after a connect and whenever in-flight slots free up."""
        self._ready_listeners.append(listener)

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
        on_result: ResultCallback | None = None,
    ) -> bool:
        """Hand a message to the socket; False (and nothing kept) when that is impossible.

        When True, ``on_result`` is called exactly once, later, on the loop: True on a
        successful PUBACK (for QoS 0: once written to the socket), False on a failure
        reason code or when the connection ends first.
        """
        if not self.can_publish():
            return False
        return self._publish_now(topic, payload, qos, retain, on_result)

    async def run(self) -> None:
        """Connect, and reconnect after every loss, until ``stop()``."""
        self._loop = asyncio.get_running_loop()
        backoff = Backoff(self._settings.reconnect_min_s, self._settings.reconnect_max_s,
                          self._rng)
        while not self._stopping:
            if await self._run_session():
                backoff.reset()
            if self._stopping:
                break
            delay = backoff.next_delay()
            log.info("mqtt_reconnect_wait", delay_s=round(delay, 2))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def stop(self) -> None:
        """Publish a retained OFFLINE, wait (bounded) for it, disconnect cleanly.

        A clean DISCONNECT makes the broker drop the last will, hence the explicit
        OFFLINE first.
        """
        self._stopping = True
        self._wake.set()
        session = self._session
        if session is None:
            return
        timeout = self._settings.stop_timeout_s
        if self._connected:
            loop = asyncio.get_running_loop()
            acked: asyncio.Future[bool] = loop.create_future()

            def done(ok: bool) -> None:
                if not acked.done():
                    acked.set_result(ok)

            if self._publish_now(self._topics.state("conn"), self._offline, 1, True, done):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(acked), timeout)
        if not session.ended.done():
            session.client.disconnect()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(session.ended), timeout)
        if not session.ended.done():
            session.ended.set_result(None)

    # ----- one connection ---------------------------------------------------------

    async def _run_session(self) -> bool:
        """One connection from connect to loss; True if the broker accepted it."""
        assert self._loop is not None
        client = self._new_client()
        try:
            await self._loop.run_in_executor(None, self._blocking_connect, client)
        except OSError as exc:
            log.warning("mqtt_connect_failed", url=self._settings.server, error=str(exc))
            return False
        sock = client.socket()
        if self._stopping or sock is None:  # stop() came while we were connecting
            if sock is not None:
                sock.close()
            return False
        session = _Session(client, sock, self._loop.create_future(),
                           self._loop.create_future())
        self._session = session
        try:
            self._attach(session)
            if not await self._wait_connack(session):
                return False
            await session.ended
            return True
        finally:
            self._detach(session)

    def _new_client(self) -> mqtt.Client:
        s = self._settings
        v5 = s.protocol == "5"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id or self._topics.gateway_id,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if v5 else True,
        )
        client.max_inflight_messages_set(0)  # our window limits; paho must never queue
        client.connect_timeout = s.connect_timeout_s
        if s.username is not None:
            client.username_pw_set(s.username, s.password)
        tls, _host, _port = s.endpoint()
        if tls:
            client.tls_set(
                ca_certs=str(s.ca_cert) if s.ca_cert else None,
                certfile=str(s.client_cert) if s.client_cert else None,
                keyfile=str(s.client_key) if s.client_key else None,
            )
        client.will_set(self._topics.state("conn"), self._offline, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        return client

    def _blocking_connect(self, client: mqtt.Client) -> None:
        """TCP (+TLS) connect and CONNECT packet; runs in an executor thread."""
        _tls, host, port = self._settings.endpoint()
        if self._settings.protocol == "5":
            client.connect(host, port, self._settings.keepalive_s, clean_start=True)
        else:
            client.connect(host, port, self._settings.keepalive_s)
        if self._stopping:  # best effort if the run task was cancelled meanwhile
            sock = client.socket()
            if sock is not None:
                sock.close()

    def _attach(self, session: _Session) -> None:
        """Hand the connected client to the loop: socket watchers and the misc task."""
        assert self._loop is not None
        client, loop = session.client, self._loop
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        session.fd = session.sock.fileno()
        session.watched = True
        loop.add_reader(session.fd, self._on_readable, session)
        if client.want_write():
            loop.add_writer(session.fd, client.loop_write)
        session.misc = loop.create_task(self._misc_loop(client), name="mqtt-misc")

    async def _wait_connack(self, session: _Session) -> bool:
        done, _ = await asyncio.wait(
            (session.connack, session.ended), timeout=self._settings.connect_timeout_s,
            return_when=asyncio.FIRST_COMPLETED)
        if session.connack in done:
            return session.connack.result()
        if not done:
            log.warning("mqtt_connack_timeout", url=self._settings.server,
                        timeout_s=self._settings.connect_timeout_s)
        return False

    def _detach(self, session: _Session) -> None:
        """Close the socket if still open, and fail everything in flight exactly once."""
        assert self._loop is not None
        if session.misc is not None:
            session.misc.cancel()
        self._unwatch(session)
        session.sock.close()
        if not session.ended.done():
            session.ended.set_result(None)
        self._session = None
        self._connected = False
        was_connected = session.accepted
        pending, self._pending = self._pending, {}
        if was_connected:
            self._down_since = time.monotonic()
            emit = log.info if self._stopping else log.warning
            emit("mqtt_disconnected", url=self._settings.server,
                 connected_for_s=round(self._down_since - self._up_since, 1),
                 failed_in_flight=sum(cb is not None for cb in pending.values()),
                 stopping=self._stopping)
        for callback in pending.values():
            if callback is not None:
                self._call_result(callback, False)
        if was_connected and self._on_connection_change is not None:
            self._guard("on_connection_change", self._on_connection_change, False)

    async def _misc_loop(self, client: mqtt.Client) -> None:
        """Keep-alive pings and the dead-peer check (no PINGRESP within keepalive)."""
        interval = min(1.0, self._settings.keepalive_s / 4)
        while client.loop_misc() == MQTTErrorCode.MQTT_ERR_SUCCESS:
            await asyncio.sleep(interval)

    # ----- socket watchers (loop thread) ------------------------------------------

    def _on_readable(self, session: _Session) -> None:
        if not session.watched:
            return
        session.client.loop_read()
        sock = session.sock
        # TLS may hold decrypted bytes that select() cannot see: read them now.
        if (session.watched and self._loop is not None and isinstance(sock, ssl.SSLSocket)
                and sock.pending()):
            self._loop.call_soon(self._on_readable, session)

    def _watched(self, sock: Any) -> _Session | None:
        session = self._session
        if session is None or session.sock is not sock or not session.watched:
            return None
        return session

    def _on_register_write(self, client: mqtt.Client, _userdata: object, sock: Any) -> None:
        session = self._watched(sock)
        if session is not None and self._loop is not None:
            self._loop.add_writer(session.fd, client.loop_write)

    def _on_unregister_write(self, _client: mqtt.Client, _userdata: object, sock: Any) -> None:
        session = self._watched(sock)
        if session is not None and self._loop is not None:
            self._loop.remove_writer(session.fd)

    def _on_socket_close(self, _client: mqtt.Client, _userdata: object, sock: Any) -> None:
        """paho is closing the socket (error, keep-alive timeout, our DISCONNECT)."""
        session = self._watched(sock)
        if session is None:
            return
        self._unwatch(session)
        self._connected = False  # refuse publishes at once; _detach does the rest
        if not session.ended.done():
            session.ended.set_result(None)

    def _unwatch(self, session: _Session) -> None:
        if session.watched and self._loop is not None:
            session.watched = False
            self._loop.remove_reader(session.fd)
            self._loop.remove_writer(session.fd)

    # ----- paho callbacks (loop thread) -------------------------------------------

    def _on_connect(self, client: mqtt.Client, _userdata: object, _flags: mqtt.ConnectFlags,
                    reason: ReasonCode, _props: object) -> None:
        session = self._session
        if session is None or session.connack.done():
            return
        if reason.is_failure:
            log.error("mqtt_connect_refused", url=self._settings.server, reason=str(reason))
            session.connack.set_result(False)
            return
        client.subscribe(self._topics.command_filter(), qos=1)
        self._connected = session.accepted = True
        self._up_since = time.monotonic()
        log.info("mqtt_connected", url=self._settings.server,
                 outage_s=round(self._up_since - self._down_since, 1))
        self._publish_now(self._topics.state("conn"), self._online, 1, True, None)
        session.connack.set_result(True)
        if self._on_connection_change is not None:
            self._guard("on_connection_change", self._on_connection_change, True)
        self._schedule_ready()

    def _on_subscribe(self, _client: mqtt.Client, _userdata: object, _mid: int,
                      reasons: list[ReasonCode], _props: object) -> None:
        """A refused subscription means no downlinks: say so loudly (ACL on the broker)."""
        failed = [str(r) for r in reasons if r.is_failure]
        if failed:
            log.error("mqtt_subscribe_refused", filter=self._topics.command_filter(),
                      reasons=failed)

    def _on_message(self, _client: mqtt.Client, _userdata: object,
                    msg: mqtt.MQTTMessage) -> None:
        name = self._topics.command_name(msg.topic)
        if name is None:
            log.warning("mqtt_unexpected_topic", topic=msg.topic)
            return
        self._guard("on_command", self._on_command, name, bytes(msg.payload))

    def _on_publish(self, _client: mqtt.Client, _userdata: object, mid: int,
                    reason: ReasonCode, _props: object) -> None:
        if mid not in self._pending:
            return
        callback = self._pending.pop(mid)
        ok = not reason.is_failure
        if not ok:
            log.warning("mqtt_publish_rejected", mid=mid, reason=str(reason))
        if callback is not None:
            self._call_result(callback, ok)
        self._schedule_ready()

    # ----- helpers ----------------------------------------------------------------

    def _publish_now(self, topic: str, payload: bytes, qos: int, retain: bool,
                     on_result: ResultCallback | None) -> bool:
        """Publish on the current client, bypassing the window check (state messages)."""
        session = self._session
        if session is None or not self._connected:
            return False
        info = session.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.debug("mqtt_publish_refused", topic=topic, rc=int(info.rc))
            return False
        self._pending[info.mid] = on_result
        return True

    def _schedule_ready(self) -> None:
        """Coalesce many PUBACKs read at once into one ready notification."""
        if not self._ready_scheduled and self._loop is not None and self._ready_listeners:
            self._ready_scheduled = True
            self._loop.call_soon(self._fire_ready)

    def _fire_ready(self) -> None:
        self._ready_scheduled = False
        if self.can_publish():
            for listener in self._ready_listeners:
                self._guard("ready_listener", listener)

    def _call_result(self, callback: ResultCallback, ok: bool) -> None:
        self._guard("on_result", callback, ok)

    @staticmethod
    def _guard(what: str, func: Callable[..., None], *args: Any) -> None:
        """A caller's callback failing must not break the connection handling."""
        try:
            func(*args)
        except Exception:
            log.exception("mqtt_callback_failed", callback=what)
