"""The UDP conversation with one Semtech-protocol server, on the asyncio event loop.

PROTOCOL.TXT says acknowledgements are "only used for network quality
assessment, not to correct UDP datagrams losses (no retries)". This gateway does
better, because it has a buffer: a PUSH_DATA is re-sent with back-off until its
PUSH_ACK arrives, and only then does the caller hear "delivered". After
``push_attempts`` sends without an ack the caller hears "failed" (the buffer keeps
the frame) and the link counts as down.

State, as ``status`` shows it:

* ``connecting`` — socket open, no ack heard yet: nothing is pushed, so a server
  that never answers does not eat frames one by one.
* ``up`` — a PULL_ACK or PUSH_ACK was heard; pushes flow.
* ``down`` — ``missed_pulls`` keep-alives went unanswered, a push ran out of
  attempts, or the kernel reported the port unreachable. Everything in flight is
  failed at once, and after a jittered back-off the host name is resolved again
  (a server that moved to another address is found) and a new socket is opened.

Datagrams that are not protocol v2, or acks for tokens not in flight, are counted
and logged one line per reason per ``bad_log_interval_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import structlog

from packet_forwarder.semtech_udp.codec import Datagram, DatagramError, Kind, decode, encode

log = structlog.get_logger(__name__)

ResultCallback = Callable[[bool], None]
Resolver = Callable[[str, int], Awaitable[tuple[int, tuple[str, int]]]]
"""(host, port) → (address family, (address, port)); the system resolver by default."""
PullRespHandler = Callable[[int, dict[str, Any]], None]
"""Called with the PULL_RESP token and its JSON object; answer with :meth:`send_tx_ack`."""
State = Literal["connecting", "up", "down"]


class UdpSettingsError(ValueError):
    """The Semtech UDP settings cannot work."""


@dataclass(frozen=True)
class UdpSettings:
    host: str
    port: int = 1700
    keepalive_s: float = 10.0
    """PULL_DATA period (the reference forwarder's default ``keepalive_interval``)."""
    missed_pulls: int = 3
    push_timeout_s: float = 1.0
    """First re-send of an unacknowledged PUSH_DATA; doubles per attempt up to ``resend_max_s``."""
    resend_max_s: float = 8.0
    push_attempts: int = 6
    max_inflight: int = 32
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 30.0
    bad_log_interval_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.host or not 0 < self.port < 65536:
            raise UdpSettingsError(f"bad UDP server address {self.host!r}:{self.port}")
        if min(self.keepalive_s, self.push_timeout_s, self.reconnect_min_s) <= 0:
            raise UdpSettingsError("keepalive_s, push_timeout_s, reconnect_min_s must be > 0")
        if self.push_attempts < 1 or self.missed_pulls < 1 or self.max_inflight < 1:
            raise UdpSettingsError("push_attempts, missed_pulls, max_inflight must be >= 1")

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> UdpSettings:
        """From ``udp://host[:port]`` (port 1700 when absent)."""
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError as exc:
            raise UdpSettingsError(f"bad port in {url!r}") from exc
        if parts.scheme != "udp" or not parts.hostname:
            raise UdpSettingsError(f"Semtech UDP server must look like udp://host:port: {url!r}")
        return cls(host=parts.hostname, port=port or 1700, **kwargs)


@dataclass
class LinkCounters:
    push_sent: int = 0
    push_resent: int = 0
    push_acked: int = 0
    push_failed: int = 0
    pull_sent: int = 0
    pull_acked: int = 0
    pull_resp: int = 0
    tx_ack_sent: int = 0
    bad: dict[str, int] = field(default_factory=dict)
    reconnects: int = 0


@dataclass
class _Pending:
    data: bytes
    on_result: ResultCallback
    attempts: int = 1
    timer: asyncio.TimerHandle | None = None


class _LineLimiter:
    """One log line per reason per interval; the next line says how many were held back."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval, self._clock = interval_s, clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def allow(self, reason: str) -> int | None:
        """None: stay quiet; else the number of lines suppressed since the last one."""
        now = self._clock()
        last = self._last.get(reason)
        if last is not None and now - last < self._interval:
            self._held[reason] = self._held.get(reason, 0) + 1
            return None
        self._last[reason] = now
        return self._held.pop(reason, 0)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, link: SemtechUdpLink) -> None:
        self._link = link

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._link._received(data)

    def error_received(self, exc: Exception) -> None:
        self._link._socket_error(exc)


class SemtechUdpLink:
    """One server's UDP endpoint: see the module docstring."""

    def __init__(self, settings: UdpSettings, gateway_eui: bytes, *,
                 on_pull_resp: PullRespHandler | None = None, name: str = "default",
                 rng: random.Random | None = None, resolve: Resolver | None = None) -> None:
        if len(gateway_eui) != 8:
            raise UdpSettingsError("the gateway EUI must be 8 bytes")
        self.settings = settings
        self.name = name
        self._eui = gateway_eui
        self.on_pull_resp = on_pull_resp
        self._rng = rng or random.Random()
        self._resolve: Resolver = resolve or self._getaddrinfo
        self.state: State = "connecting"
        self.counters = LinkCounters()
        self.address: tuple[str, int] | None = None
        self.last_ack_monotonic: float | None = None
        self.down_since: float | None = time.monotonic()
        self._transport: asyncio.DatagramTransport | None = None
        self._pending: dict[int, _Pending] = {}
        self._pull_token: int | None = None
        self._pull_answered = True
        self._missed = 0
        self._failed = asyncio.Event()
        self._ready_listeners: list[Callable[[], None]] = []
        self._limiter = _LineLimiter(settings.bad_log_interval_s)
        self._stopping = False
        self._had_ack_since_open = False

    # -- public ---------------------------------------------------------------------------

    def add_ready_listener(self, callback: Callable[[], None]) -> None:
        """Called when pushing becomes possible: link up, or an in-flight slot freed."""
        self._ready_listeners.append(callback)

    def can_push(self) -> bool:
        return (self.state == "up" and self._transport is not None
                and len(self._pending) < self.settings.max_inflight)

    @property
    def inflight(self) -> int:
        return len(self._pending)

    def push(self, body: dict[str, Any], on_result: ResultCallback) -> bool:
        """Send a PUSH_DATA and re-send it until acked; False (no callback) if it cannot go now.

        ``on_result`` is called exactly once, later, on the loop thread.
        """
        if not self.can_push() or self._transport is None:
            return False
        token = self._new_token()
        data = encode(Datagram(Kind.PUSH_DATA, token, self._eui, body))
        entry = _Pending(data, on_result)
        self._pending[token] = entry
        self._transport.sendto(data)
        self.counters.push_sent += 1
        entry.timer = asyncio.get_running_loop().call_later(
            self._resend_delay(1), self._resend, token)
        return True

    def push_once(self, body: dict[str, Any]) -> bool:
        """A PUSH_DATA nobody waits for (gateway ``stat``): sent once, never re-sent."""
        if self._transport is None or self.state != "up":
            return False
        self._transport.sendto(encode(Datagram(Kind.PUSH_DATA, self._new_token(), self._eui,
                                               body)))
        return True

    def send_tx_ack(self, token: int, body: dict[str, Any]) -> None:
        """Answer the PULL_RESP with ``token`` (dropped if the socket is gone: UDP is lossy)."""
        if self._transport is None:
            return
        self._transport.sendto(encode(Datagram(Kind.TX_ACK, token, self._eui, body)))
        self.counters.tx_ack_sent += 1

    def ack_ratio(self) -> float:
        """Percentage of PUSH_DATA sends acknowledged (``stat.ackr``)."""
        sent = self.counters.push_sent + self.counters.push_resent
        return 100.0 if sent == 0 else round(100.0 * self.counters.push_acked / sent, 1)

    def snapshot(self) -> dict[str, Any]:
        c = self.counters
        return {"protocol": "semtech_udp", "state": self.state,
                "server": f"{self.settings.host}:{self.settings.port}",
                "address": None if self.address is None else f"{self.address[0]}:{self.address[1]}",
                "down_for_s": (None if self.down_since is None
                               else round(time.monotonic() - self.down_since, 1)),
                "inflight": len(self._pending), "push_sent": c.push_sent,
                "push_resent": c.push_resent, "push_acked": c.push_acked,
                "push_failed": c.push_failed, "pull_acked": c.pull_acked,
                "downlinks": c.pull_resp, "bad_datagrams": sum(c.bad.values()),
                "reconnects": c.reconnects}

    async def run(self) -> None:
        """Resolve, open, keep alive; on failure wait, re-resolve, reopen. Until cancelled."""
        loop = asyncio.get_running_loop()
        delay = self.settings.reconnect_min_s
        while not self._stopping:
            self._failed.clear()
            if await self._open(loop):
                keepalive = asyncio.create_task(self._keepalive(), name=f"udp-pull-{self.name}")
                try:
                    await self._failed.wait()
                finally:
                    keepalive.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await keepalive
                    self._close_transport()
                if self._had_ack_since_open:
                    delay = self.settings.reconnect_min_s
            if self._stopping:
                break
            self.counters.reconnects += 1
            await asyncio.sleep(self._rng.uniform(delay / 2, delay))
            delay = min(self.settings.reconnect_max_s, delay * 2)

    async def stop(self) -> None:
        """Fail what is in flight (the buffer keeps it) and close the socket."""
        self._stopping = True
        self._failed.set()
        self._fail_all()
        self._close_transport()

    # -- connection -----------------------------------------------------------------------

    async def _open(self, loop: asyncio.AbstractEventLoop) -> bool:
        s = self.settings
        self._had_ack_since_open = False
        try:
            family, address = await self._resolve(s.host, s.port)
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Protocol(self), remote_addr=address, family=family)
        except (OSError, IndexError) as exc:
            self._go_down(f"cannot open: {exc}")
            return False
        self._transport = transport
        self.address = address
        self.state = "connecting" if self.state != "down" else "down"
        self._missed = 0
        self._pull_answered = True
        log.info("udp_server_open", server=self.name, host=s.host, address=address[0],
                 port=address[1])
        return True

    @staticmethod
    async def _getaddrinfo(host: str, port: int) -> tuple[int, tuple[str, int]]:
        """The first datagram address of ``host`` (asked again at every reconnect)."""
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        family, _, _, _, sockaddr = infos[0]
        return int(family), (str(sockaddr[0]), int(sockaddr[1]))

    def _close_transport(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def _keepalive(self) -> None:
        while True:
            if not self._pull_answered:
                self._missed += 1
                if self._missed >= self.settings.missed_pulls:
                    self._go_down(f"{self._missed} PULL_DATA unanswered")
                    return
            self._send_pull()
            await asyncio.sleep(self.settings.keepalive_s)

    def _send_pull(self) -> None:
        if self._transport is None:
            return
        self._pull_token = self._new_token()
        self._pull_answered = False
        self._transport.sendto(encode(Datagram(Kind.PULL_DATA, self._pull_token, self._eui)))
        self.counters.pull_sent += 1

    def _go_down(self, reason: str) -> None:
        if self.state != "down":
            log.warning("udp_server_down", server=self.name, reason=reason,
                        inflight=len(self._pending))
            self.down_since = time.monotonic()
        self.state = "down"
        self._fail_all()
        self._failed.set()

    def _heard(self) -> None:
        """Any valid ack: the server is there."""
        self.last_ack_monotonic = time.monotonic()
        self._had_ack_since_open = True
        self._missed = 0
        if self.state != "up":
            was = self.state
            self.state = "up"
            self.down_since = None
            log.info("udp_server_up", server=self.name, was=was)
            self._notify_ready()

    # -- datagrams ------------------------------------------------------------------------

    def _received(self, data: bytes) -> None:
        try:
            dgram = decode(data)
        except DatagramError as exc:
            self.report_bad("malformed", str(exc), data)
            return
        if dgram.kind is Kind.PUSH_ACK:
            self._push_acked(dgram.token, data)
        elif dgram.kind is Kind.PULL_ACK:
            if dgram.token != self._pull_token:
                self.report_bad("unexpected_token", f"PULL_ACK token {dgram.token}", data)
                return
            self._pull_answered = True
            self.counters.pull_acked += 1
            self._heard()
        elif dgram.kind is Kind.PULL_RESP:
            self.counters.pull_resp += 1
            if self.on_pull_resp is None:
                self.report_bad("downlinks_disabled", "downlinks = false for this server", data)
                return
            self.on_pull_resp(dgram.token, dgram.body)
        else:
            self.report_bad("wrong_direction", f"{dgram.kind.name} is sent by gateways", data)

    def _push_acked(self, token: int, data: bytes) -> None:
        entry = self._pending.pop(token, None)
        if entry is None:
            # late ack of a datagram already acked or given up: harmless, but say so once
            self.report_bad("unexpected_token", f"PUSH_ACK token {token} not in flight", data)
            return
        if entry.timer is not None:
            entry.timer.cancel()
        self.counters.push_acked += 1
        self._heard()
        entry.on_result(True)
        self._notify_ready()

    def report_bad(self, reason: str, detail: str, data: bytes) -> None:
        """Count a bad datagram and log it, one line per reason per interval."""
        self.counters.bad[reason] = self.counters.bad.get(reason, 0) + 1
        held = self._limiter.allow(reason)
        if held is not None:
            log.warning("udp_bad_datagram", server=self.name, reason=reason, detail=detail,
                        size=len(data), head=data[:16].hex(), suppressed=held)

    def _socket_error(self, exc: Exception) -> None:
        # ICMP port unreachable on a connected socket: the server is not listening
        self._go_down(f"socket error: {exc}")

    # -- resends --------------------------------------------------------------------------

    def _resend_delay(self, attempt: int) -> float:
        s = self.settings
        return min(s.resend_max_s, s.push_timeout_s * 2.0 ** (attempt - 1))

    def _resend(self, token: int) -> None:
        entry = self._pending.get(token)
        if entry is None:
            return
        if entry.attempts >= self.settings.push_attempts or self._transport is None:
            self._go_down(f"PUSH_DATA unacknowledged after {entry.attempts} sends")
            return
        entry.attempts += 1
        self._transport.sendto(entry.data)
        self.counters.push_resent += 1
        entry.timer = asyncio.get_running_loop().call_later(
            self._resend_delay(entry.attempts), self._resend, token)

    def _fail_all(self) -> None:
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            if entry.timer is not None:
                entry.timer.cancel()
            self.counters.push_failed += 1
            entry.on_result(False)

    def _notify_ready(self) -> None:
        if self.can_push():
            for callback in list(self._ready_listeners):
                callback()

    def _new_token(self) -> int:
        while True:
            token = self._rng.randrange(0x10000)
            if token not in self._pending and token != self._pull_token:
                return token
