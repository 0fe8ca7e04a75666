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
* Two lanes. Only ``bulk`` publishes (the buffer's uplinks) count against
  ``max_inflight``; everything else (downlink acks, stats, connection state) has
  its own, larger window, so a backlog draining over a slow line never starves them:
  a dropped ack makes ChirpStack reuse a frame counter, missing stats make the
  gateway look offline.
* Every failure to connect is one warning line naming its cause (the logging
  rate limiter keys on ``reason``), and the link always retries. A broker that is
  down (TCP refused, unreachable) is retried every 1-2 s, jittered: such an attempt
  costs the broker nothing, and the gateway is back within a couple of seconds of
  the broker. Failures after TCP (TLS, credentials, no CONNACK) back off
  exponentially, jittered, up to ``reconnect_max_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

# Before paho: it imports urllib.request, which only its proxy support uses.
import packet_forwarder.lazy_urllib  # noqa: F401

# isort: split
import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from packet_forwarder.chirpstack import PROTOBUF, conn_state, marshal
from packet_forwarder.mqtt_client import ChunkedClient
from packet_forwarder.mqtt_tls import TlsFilesError, tls_context
from packet_forwarder.topics import Topics

log = structlog.get_logger(__name__)

ResultCallback = Callable[[bool], None]
_SCHEMES = {"mqtt": False, "tcp": False, "mqtts": True, "ssl": True, "tls": True}
_MAX_WINDOW = 60_000  # well below paho's 65,535 message ids per connection
_CONTROL_WINDOW = 1_000
"""In-flight limit of the control lane: acks and stats are few; this only bounds memory."""


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
    reconnect_down_max_s: float = 2.0
    """Retry cap while the broker refuses TCP (down): how soon the gateway is back."""
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
        if not 0 < self.reconnect_min_s <= min(self.reconnect_max_s,
                                                self.reconnect_down_max_s):
            raise MqttSettingsError(
                "need 0 < reconnect_min_s <= reconnect_max_s and reconnect_down_max_s")
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


class _ConnectFailed(Exception):
    """One failed connect: ``reason`` is the cause's short key, ``down`` True when the
    broker simply was not there (fast retry), the message says what to check."""

    def __init__(self, reason: str, message: str, *, down: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.down = down


def _classify(exc: OSError, tls: bool, where: str) -> _ConnectFailed:
    """Name the cause of a failed TCP/TLS connect."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _ConnectFailed("server_certificate",
                              f"broker certificate not trusted by ca_cert: {exc}")
    if isinstance(exc, ssl.SSLError):
        text = str(exc)
        if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
            return _ConnectFailed("tls_to_plain_port",
                                  f"TLS handshake with {where} failed: the port speaks plain "
                                  f"MQTT? (use mqtt://) ({text})")
        return _ConnectFailed("tls_handshake", f"TLS handshake with {where} failed: {text}")
    if tls and isinstance(exc, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        return _ConnectFailed("tls_to_plain_port",
                              f"{where} dropped the TLS handshake: the port speaks plain MQTT? "
                              f"(use mqtt://) ({exc})")
    if isinstance(exc, ConnectionRefusedError):
        return _ConnectFailed("refused", f"nothing listens on {where} ({exc})", down=True)
    if isinstance(exc, socket.gaierror):
        return _ConnectFailed("dns", f"cannot resolve {where} ({exc})", down=True)
    if isinstance(exc, TimeoutError):
        return _ConnectFailed("timeout", f"no TCP answer from {where} ({exc})", down=True)
    return _ConnectFailed("network", f"cannot reach {where}: {exc}", down=not tls)


@dataclass
class _Session:
    """One TCP connection: its paho client and the futures that mark its phases."""

    client: ChunkedClient
    sock: Any
    connack: asyncio.Future[str | None]
    """None when accepted, else the broker's reason for refusing."""
    ended: asyncio.Future[None]
    misc: asyncio.Task[None] | None = None
    accepted: bool = False
    fd: int = -1
    watched: bool = False
    """Watchers are keyed by fd number: remove them once, before the socket closes,
    so a reused number of someone else's socket is never touched."""
    last_error: str = ""
    """paho's last error log line (e.g. the TLS alert that closed the socket)."""
    write_due: bool = False
    """A write pass is scheduled for the end of this loop turn (see ``_on_register_write``)."""
    write_held: bool = False
    """Bytes were queued while writes are held: ``release_writes`` writes them."""
    writer_watched: bool = False
    """The socket is watched for writability (a write pass left bytes behind)."""


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
        self._bulk: set[int] = set()
        """Message ids of ``bulk`` publishes: only these fill ``max_inflight``."""
        self._ready_listeners: list[Callable[[], None]] = []
        self._ready_scheduled = False
        self._stopping = False
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._down_since = time.monotonic()
        self._up_since = 0.0
        self._holding = 0
        """Above 0 between ``hold_writes`` and ``release_writes``."""
        self._reading = False
        self._ready_due = False
        """PUBACKs freed slots during this read: tell the listeners at its end."""

    # ----- public API -------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    def can_publish(self) -> bool:
        """True when connected and the bulk lane's in-flight window has room."""
        return self._connected and len(self._bulk) < self._settings.max_inflight

    def add_ready_listener(self, listener: Callable[[], None]) -> None:
        """Called (on the loop) after a connect and whenever in-flight slots free up."""
        self._ready_listeners.append(listener)

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
        on_result: ResultCallback | None = None, bulk: bool = False,
    ) -> bool:
        """Hand a message to the socket; False (and nothing kept) when that is impossible.

        ``bulk`` messages (the buffer's uplinks) share the ``max_inflight`` window;
        others (acks, stats) use the control lane, which a full bulk window never
        blocks. When True, ``on_result`` is called exactly once, later, on the loop:
        True on a successful PUBACK (for QoS 0: once written to the socket), False on a
        failure reason code or when the connection ends first.
        """
        if bulk:
            if not self.can_publish():
                return False
        elif not self._connected or len(self._pending) - len(self._bulk) >= _CONTROL_WINDOW:
            return False
        return self._publish_now(topic, payload, qos, retain, on_result, bulk=bulk)

    def hold_writes(self) -> None:
        """Keep what is published from now on queued until ``release_writes`` (pairs nest).

        For a caller that publishes a batch in one go (the radio loop's uplinks): the
        batch then goes out in one write pass at ``release_writes``, in the same loop
        turn, instead of a pass scheduled for the next turn; each turn costs a
        ``select`` and the loop's bookkeeping. Call both on the loop, in a
        ``try``/``finally``.
        """
        self._holding += 1

    def release_writes(self) -> None:
        """End a ``hold_writes``: write what was queued meanwhile, now."""
        self._holding = max(self._holding - 1, 0)
        session = self._session
        if self._holding or session is None or not session.write_held:
            return
        session.write_held = False
        if session.watched and not session.write_due:  # else the scheduled pass writes
            self._write_pass(session)

    async def run(self) -> None:
        """Connect, and reconnect after every loss, until ``stop()``."""
        self._loop = asyncio.get_running_loop()
        s = self._settings
        backoff = Backoff(s.reconnect_min_s, s.reconnect_max_s, self._rng)
        down_backoff = Backoff(s.reconnect_min_s, s.reconnect_down_max_s, self._rng)
        while not self._stopping:
            outcome = await self._run_session()
            if outcome == "accepted":
                backoff.reset()
                down_backoff.reset()
            if self._stopping:
                break
            delay = (down_backoff if outcome == "down" else backoff).next_delay()
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

    async def _run_session(self) -> Literal["accepted", "down", "failed"]:
        """One connection from connect to loss: accepted by the broker, the broker was
        not there (``down``: retry soon), or failed after reaching it."""
        try:
            return await self._session_once()
        except _ConnectFailed as exc:
            self._connect_failed(exc)
            return "down" if exc.down else "failed"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or a setting paho refuses: say it, retry later
            self._connect_failed(_ConnectFailed("unexpected", f"{type(exc).__name__}: {exc}"))
            return "failed"

    def _connect_failed(self, exc: _ConnectFailed) -> None:
        """One warning line per failed attempt (the log rate limiter keys on ``reason``)."""
        if not self._stopping:
            log.warning("mqtt_connect_failed", url=self._settings.server,
                        reason=exc.reason, error=str(exc))

    async def _session_once(self) -> Literal["accepted", "down", "failed"]:
        assert self._loop is not None
        tls, host, port = self._settings.endpoint()
        try:
            client = self._new_client()
        except TlsFilesError as exc:
            raise _ConnectFailed("tls_files", str(exc)) from exc
        try:
            await self._loop.run_in_executor(None, self._blocking_connect, client)
        except OSError as exc:
            raise _classify(exc, tls, f"{host}:{port}") from exc
        sock = client.socket()
        if self._stopping or sock is None:  # stop() came while we were connecting
            if sock is not None:
                sock.close()
            return "failed"
        session = _Session(client, sock, self._loop.create_future(),
                           self._loop.create_future())
        self._session = session
        try:
            self._attach(session)
            await self._wait_connack(session, tls)
            await session.ended
            return "accepted"
        finally:
            self._detach(session)

    def _new_client(self) -> ChunkedClient:
        s = self._settings
        v5 = s.protocol == "5"
        client = ChunkedClient(
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
            client.tls_set_context(tls_context(s.ca_cert, s.client_cert, s.client_key))
        client.will_set(self._topics.state("conn"), self._offline, qos=1, retain=True)
        client.on_log = self._on_log
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
            self._watch_writable(session)
        session.misc = loop.create_task(self._misc_loop(client), name="mqtt-misc")

    async def _wait_connack(self, session: _Session, tls: bool) -> None:
        """Return once the broker accepted; otherwise raise ``_ConnectFailed`` with the cause."""
        timeout = self._settings.connect_timeout_s
        done, _ = await asyncio.wait(
            (session.connack, session.ended), timeout=timeout,
            return_when=asyncio.FIRST_COMPLETED)
        if session.connack in done:
            refused = session.connack.result()
            if refused is None:
                return
            raise _ConnectFailed("refused_by_broker", f"broker refused CONNECT: {refused}")
        if not done:
            raise _ConnectFailed("no_connack", f"the broker never answered CONNECT within "
                                               f"{timeout:g} s")
        error = session.last_error
        if tls and any(w in error.lower() for w in ("certificate", "alert", "handshake")):
            raise _ConnectFailed("client_certificate",
                                 f"broker closed the TLS session: client certificate "
                                 f"rejected or missing? ({error})")
        hint = "" if tls else " (a TLS port? use mqtts://)"
        raise _ConnectFailed("closed_before_connack",
                             f"broker closed the connection before CONNACK{hint}"
                             + (f": {error}" if error else ""))

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
        self._bulk.clear()
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
        client = session.client
        self._reading = True
        try:
            client.loop_read()
        finally:
            self._reading = False
        if self._ready_due:  # once per read, however many PUBACKs it brought
            self._ready_due = False
            self._fire_ready()
        sock = session.sock
        # Bytes already read (our chunk, or TLS's decrypted record) that select() cannot
        # see: read them now.
        if session.watched and self._loop is not None and (
                client.buffered() or (isinstance(sock, ssl.SSLSocket) and sock.pending())):
            self._loop.call_soon(self._on_readable, session)

    def _watched(self, sock: Any) -> _Session | None:
        session = self._session
        if session is None or session.sock is not sock or not session.watched:
            return None
        return session

    def _on_register_write(self, _client: mqtt.Client, _userdata: object, sock: Any) -> None:
        """paho has bytes to send: write them at the end of this loop turn.

        A socket with room in its send buffer is writable already, so watching it
        for that would cost two ``epoll_ctl`` calls and an extra loop turn per
        publish. Publishes made in the same turn go out in one write pass; the
        socket is watched only when that pass leaves bytes behind (buffer full).
        """
        session = self._watched(sock)
        if session is None or self._loop is None or session.write_due:
            return
        if self._holding:
            session.write_held = True  # release_writes writes them
            return
        session.write_due = True
        self._loop.call_soon(self._write_due, session)

    def _write_due(self, session: _Session) -> None:
        session.write_due = session.write_held = False
        if session.watched:
            self._write_pass(session)

    def _write_pass(self, session: _Session) -> None:
        client = session.client
        client.loop_write()
        if session.watched and client.want_write():
            self._watch_writable(session)

    def _watch_writable(self, session: _Session) -> None:
        if self._loop is not None and not session.writer_watched:
            session.writer_watched = True
            self._loop.add_writer(session.fd, session.client.loop_write)

    def _on_unregister_write(self, _client: mqtt.Client, _userdata: object, sock: Any) -> None:
        session = self._watched(sock)
        if session is not None and self._loop is not None and session.writer_watched:
            session.writer_watched = False
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
            session.watched = session.writer_watched = False
            self._loop.remove_reader(session.fd)
            self._loop.remove_writer(session.fd)

    # ----- paho callbacks (loop thread) -------------------------------------------

    def _on_log(self, _client: mqtt.Client, _userdata: object, level: int, buf: str) -> None:
        """Keep paho's error lines until CONNACK: the only place a TLS alert that closed
        the socket (e.g. a client certificate the broker rejected) is told."""
        session = self._session
        if session is not None and level == mqtt.MQTT_LOG_ERR:
            session.last_error = buf

    def _on_connect(self, client: mqtt.Client, _userdata: object, _flags: mqtt.ConnectFlags,
                    reason: ReasonCode, _props: object) -> None:
        session = self._session
        if session is None or session.connack.done():
            return
        if reason.is_failure:
            session.connack.set_result(str(reason))
            return
        # paho formats a log line for every packet while ``on_log`` is set (two per
        # uplink: PUBLISH out, PUBACK in); its error lines only explain a connect that
        # fails before CONNACK, so stop listening once the broker has accepted.
        client.on_log = None
        client.subscribe(self._topics.command_filter(), qos=1)
        self._connected = session.accepted = True
        self._up_since = time.monotonic()
        log.info("mqtt_connected", url=self._settings.server,
                 outage_s=round(self._up_since - self._down_since, 1))
        self._publish_now(self._topics.state("conn"), self._online, 1, True, None)
        session.connack.set_result(None)
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
        self._bulk.discard(mid)
        ok = not reason.is_failure
        if not ok:
            log.warning("mqtt_publish_rejected", mid=mid, reason=str(reason))
        if callback is not None:
            self._call_result(callback, ok)
        self._schedule_ready()

    # ----- helpers ----------------------------------------------------------------

    def _publish_now(self, topic: str, payload: bytes, qos: int, retain: bool,
                     on_result: ResultCallback | None, *, bulk: bool = False) -> bool:
        """Publish on the current client, bypassing the window check (state messages)."""
        session = self._session
        if session is None or not self._connected:
            return False
        info = session.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.debug("mqtt_publish_refused", topic=topic, rc=int(info.rc))
            return False
        self._pending[info.mid] = on_result
        if bulk:
            self._bulk.add(info.mid)
        return True

    def _schedule_ready(self) -> None:
        """Coalesce many PUBACKs read at once into one ready notification: at the end of
        the read that brought them, or (outside a read) at the next loop turn."""
        if self._reading:
            self._ready_due = True
            return
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
