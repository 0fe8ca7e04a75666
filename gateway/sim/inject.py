"""The emulator's radio input: JSON datagrams on a local Unix socket become received packets.

One JSON object per datagram::

    {"phy_payload": "<hex>", "frequency": 868100000, "sf": 7, "bw": 125000,
     "cr": "4/5", "rssi": -57, "snr": 9.5, "crc_ok": true}

A bad datagram is answered with nothing, logged in one line naming what is wrong,
and counted; it never stops the daemon. ``send_inject`` is the client side used by
``lora-gateway inject``, tests and benchmarks.

Each datagram costs the daemon's event loop a wake-up, a ``recv`` and a JSON parse,
on the thread that does the gateway's real work, where a real chip fills its buffer
with no host CPU at all. For many frames (the benchmarks) the replay feed avoids
that: write the frames once to a JSON Lines file (one datagram object per line) and
send one control datagram::

    {"replay": "/absolute/path/frames.jsonl", "rate": 260}

``rate`` is frames per second (0 or absent: all at once, as fast as the chip's buffer
takes them). The chip then takes the frames in itself as they fall due, at the
radio thread's reads of its fill level (:mod:`gateway.sim.replay`); the log says
``inject_replay_started`` and ``inject_replay_finished frames=… rejected=…``. One
replay at a time: a second one while the first runs is refused (one line).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from hal.types import CODE_RATES
from packet_forwarder.json_input import JsonInputError, loads_bounded

log = structlog.get_logger(__name__)

MAX_DATAGRAM = 65_536


class InjectError(ValueError):
    """A datagram that is not a valid packet description; ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class InjectRequest:
    phy_payload: bytes
    frequency_hz: int
    sf: int
    bw_hz: int
    cr: str
    rssi_dbm: float
    snr_db: float
    crc_ok: bool
    fault: str | None = None
    """Test hook: "truncate_record" or "corrupt_record" damages this packet's chip record."""


FAULTS = ("truncate_record", "corrupt_record")
_FIELDS = {"phy_payload", "frequency", "sf", "bw", "cr", "rssi", "snr", "crc_ok", "fault"}


def _number(obj: dict[str, Any], key: str, low: float, high: float, default: Any = None) -> Any:
    value = obj.get(key, default)
    if value is None:
        raise InjectError("missing_field", f"'{key}' is required")
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InjectError("bad_field", f"'{key}' must be a number from {low:g} to {high:g}, "
                                       f"got {repr(value)[:40]}")
    return value


@dataclass(frozen=True, slots=True)
class ReplayControl:
    """``{"replay": path, "rate": n}``: play the JSON Lines file ``path`` at ``rate``/s."""

    path: Path
    rate: float
    """Frames per second; 0 plays them all at once (as fast as the chip takes them)."""


MAX_REPLAY_RATE = 100_000.0
_CONTROL_FIELDS = {"replay", "rate"}


def _loads(data: bytes) -> Any:
    try:
        return loads_bounded(data)
    except JsonInputError as exc:
        raise InjectError("not_json", str(exc)[:120]) from None


def parse_inject_datagram(data: bytes) -> InjectRequest:
    """Validate one datagram; raises ``InjectError`` naming the first problem found."""
    return _request(_loads(data))


def parse_replay_control(obj: dict[str, Any]) -> ReplayControl:
    """Validate a replay control object; raises ``InjectError`` naming the first problem."""
    unknown = set(obj) - _CONTROL_FIELDS
    if unknown:
        raise InjectError("unknown_field", ", ".join(sorted(map(repr, unknown)))[:120])
    path = obj["replay"]
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path \
            or len(path) > 4096:
        raise InjectError("bad_field", "'replay' must be an absolute file path")
    rate = _number(obj, "rate", 0, MAX_REPLAY_RATE, 0)
    return ReplayControl(Path(path), float(rate))


def _request(obj: Any) -> InjectRequest:
    if not isinstance(obj, dict):
        raise InjectError("not_object", "expected one JSON object")
    unknown = set(obj) - _FIELDS
    if unknown:
        raise InjectError("unknown_field", ", ".join(sorted(map(repr, unknown)))[:120])
    hexed = obj.get("phy_payload")
    if not isinstance(hexed, str):
        raise InjectError("missing_field", "'phy_payload' (hex string) is required")
    try:
        payload = bytes.fromhex(hexed)
    except ValueError as exc:
        raise InjectError("bad_field", "'phy_payload' is not hex") from exc
    if not 1 <= len(payload) <= 255:
        raise InjectError("bad_field", f"'phy_payload' must be 1..255 bytes, got {len(payload)}")
    cr = obj.get("cr", "4/5")
    if cr not in CODE_RATES:
        raise InjectError("bad_field", f"'cr' must be one of {', '.join(CODE_RATES)}")
    bw = _number(obj, "bw", 125_000, 500_000, 125_000)
    if bw not in (125_000, 250_000, 500_000):
        raise InjectError("bad_field", "'bw' must be 125000, 250000 or 500000")
    crc_ok = obj.get("crc_ok", True)
    if not isinstance(crc_ok, bool):
        raise InjectError("bad_field", "'crc_ok' must be true or false")
    fault = obj.get("fault")
    if fault is not None and fault not in FAULTS:
        raise InjectError("bad_field", f"'fault' must be one of {', '.join(FAULTS)}")
    return InjectRequest(
        phy_payload=payload,
        frequency_hz=int(_number(obj, "frequency", 150e6, 1e9)),
        sf=int(_number(obj, "sf", 5, 12)),
        bw_hz=int(bw),
        cr=cr,
        rssi_dbm=float(_number(obj, "rssi", -160, 20)),
        snr_db=float(_number(obj, "snr", -30, 30)),
        crc_ok=crc_ok,
        fault=fault,
    )


class InjectServer:
    """Listens on the configured socket path and hands valid requests to ``on_packet``.

    ``on_packet`` returns False when the emulated chip's RX buffer has no room; the
    request is then kept and the socket is no longer read until ``resume`` is called
    (after the radio loop has drained the chip). Senders block instead of packets
    being dropped, so tests and benchmarks can inject as fast as they like. Pending
    datagrams are read and handed on at ``close``, so whatever a sender managed to
    send before a clean stop is received.
    """

    def __init__(self, path: Path, on_packet: Callable[[InjectRequest], bool],
                 max_pending: int = 256,
                 on_replay: Callable[[ReplayControl], None] | None = None) -> None:
        self.path = path
        self._on_packet = on_packet
        self._on_replay = on_replay
        self._max_pending = max_pending
        self._pending: deque[InjectRequest] = deque()
        self._sock: socket.socket | None = None
        self._buffer = bytearray(MAX_DATAGRAM)
        """Datagrams are read into this one buffer: ``recv(MAX_DATAGRAM)`` would allocate
        (and shrink) 64 KiB for every ~150-byte packet description."""
        self._reading = False
        self.accepted = 0
        self.rejected: dict[str, int] = {}

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.bind(str(self.path))
        sock.setblocking(False)
        os.chmod(self.path, 0o660)
        self._sock = sock
        self._set_reading(True)
        log.info("inject_socket_listening", path=str(self.path))

    def _set_reading(self, on: bool) -> None:
        if self._sock is None or on == self._reading:
            return
        loop = asyncio.get_running_loop()
        if on:
            loop.add_reader(self._sock.fileno(), self._readable)
        else:
            loop.remove_reader(self._sock.fileno())
        self._reading = on

    def _readable(self) -> None:
        while self._sock is not None and len(self._pending) < self._max_pending:
            data = self._recv()
            if data is None:
                break
            self._datagram(data)
        self.resume()

    def _recv(self) -> bytes | None:
        """The next queued datagram, None when there is none."""
        assert self._sock is not None
        try:
            size = self._sock.recv_into(self._buffer)
        except (BlockingIOError, InterruptedError):
            return None
        return bytes(memoryview(self._buffer)[:size])

    def _datagram(self, data: bytes) -> None:
        try:
            obj = _loads(data)
            if isinstance(obj, dict) and "replay" in obj:
                self._control(obj)
                return
            request = _request(obj)
        except InjectError as exc:
            self.rejected[exc.reason] = self.rejected.get(exc.reason, 0) + 1
            log.warning("inject_rejected", reason=exc.reason, detail=exc.detail, size=len(data))
            return
        self.accepted += 1
        self._pending.append(request)

    def _control(self, obj: dict[str, Any]) -> None:
        """A replay request: validated here, handed to ``on_replay`` (which logs the rest)."""
        if self._on_replay is None:
            raise InjectError("replay_unsupported", "this server takes single frames only")
        self._on_replay(parse_replay_control(obj))

    def resume(self) -> None:
        """Hand pending requests on while the chip takes them; read more when all are gone."""
        while self._pending and self._on_packet(self._pending[0]):
            self._pending.popleft()
        self._set_reading(len(self._pending) < self._max_pending)

    def pending(self) -> int:
        return len(self._pending)

    def drain_socket(self) -> None:
        """Read every datagram already queued on the socket (for a clean stop)."""
        self._set_reading(False)
        while self._sock is not None:
            data = self._recv()
            if data is None:
                break
            self._datagram(data)

    def close(self) -> None:
        self._set_reading(False)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        with contextlib.suppress(OSError):
            self.path.unlink()


def send_inject(
    path: Path, datagram: bytes | dict[str, Any], sock: socket.socket | None = None
) -> None:
    """Send one datagram (raw bytes or a dict that is JSON-encoded) to the inject socket."""
    data = json.dumps(datagram).encode() if isinstance(datagram, dict) else datagram
    own = sock is None
    s = sock or socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.sendto(data, str(path))
    finally:
        if own:
            s.close()
