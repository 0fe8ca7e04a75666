"""Remote key sync: the network side pushes session changes to the gateway over MQTT.

Topic ``{prefix}/gateway/{gateway_id}/command/keys`` in, ``.../event/keys-ack`` out (the
daemon wires them; this module is the pure handler). The format is in
``docs/key-sync.md``: an envelope ``{"v": 1, "body": "<JSON text>", "hmac_sha256":
"<hex>"}`` whose MAC, under a secret shared with the network side, covers the exact body
bytes; the body names the gateway, a strictly increasing ``seq`` and a list of ``ops``.

Every message is all-or-nothing: all ops are validated before any is applied, and the
changes commit in one store transaction together with the new ``seq``, so a message is
applied exactly once even across restarts. Re-sending the last message (an MQTT QoS 1
redelivery) is acknowledged as ``duplicate`` without touching anything.

``handle`` writes to SQLite: call it from an executor, not on the event loop.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import structlog

from packet_forwarder.json_input import JsonInputError, loads_bounded
from packet_forwarder.keystore.accounting import RateLimitedLog
from packet_forwarder.keystore.errors import KeyStoreError, RecordError
from packet_forwarder.keystore.index import SessionIndex
from packet_forwarder.keystore.records import (
    DeviceSession,
    RootKey,
    parse_hex,
    records_from_fields,
)
from packet_forwarder.keystore.store import KeyStore

log = structlog.get_logger(__name__)

SYNC_VERSION: Final = 1
MIN_SECRET_LEN: Final = 16
MAX_PAYLOAD: Final = 256 * 1024
"""A larger message is refused before parsing: the command topic is not a bulk channel."""
MAX_OPS: Final = 1000
MAX_SEQ: Final = 2**63 - 1
"""``seq`` is stored in an SQLite INTEGER (signed 64-bit)."""
_MAC_HEX: Final = re.compile(r"[0-9a-fA-F]{64}")


class SyncRejected(Exception):
    """Internal: a message refused with ``code`` (an ack ``error``) and a short detail."""

    def __init__(self, code: str, detail: str, seq: int | None = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.seq = seq


@dataclass(frozen=True, slots=True)
class _Ops:
    sessions: list[DeviceSession]
    roots: list[RootKey]
    remove: list[str]


class KeySync:
    """Authenticates, validates and applies key sync messages; builds their acks.

    ``index`` is the live filter's ``SessionIndex`` (``EdgeFilter.index``): applied
    changes show up in the next frame check. ``secret``: the shared sync secret, at
    least 16 bytes (never logged).
    """

    def __init__(
        self,
        store: KeyStore,
        index: SessionIndex,
        *,
        gateway_id: str,
        secret: bytes,
        now: Callable[[], float] = time.monotonic,
        logger: Any = None,
    ) -> None:
        if len(secret) < MIN_SECRET_LEN:
            raise ValueError(f"the key sync secret must be at least {MIN_SECRET_LEN} bytes")
        self._store = store
        self._index = index
        self._gateway_id = gateway_id.lower()
        self._secret = secret
        self._log = logger if logger is not None else log
        self._reject_log = RateLimitedLog(self._log, "key_sync_rejected", now, max_keys=64)

    def __repr__(self) -> str:
        return f"KeySync(gateway_id={self._gateway_id!r})"

    def handle(self, payload: bytes) -> tuple[bytes, int]:
        """Process one message; returns (ack payload, number of changes applied)."""
        try:
            seq, body_digest, ops = self._authenticate(payload)
            status, changes = self._apply(seq, body_digest, ops)
        except SyncRejected as exc:
            self._reject_log.emit(exc.code, exc.code, seq=exc.seq, detail=exc.detail)
            return self._ack("rejected", exc.seq, 0, exc.code, exc.detail), 0
        except Exception as exc:  # a handler bug must still answer, in one line
            detail = f"{type(exc).__name__}: {str(exc)[:120]}"
            self._reject_log.emit("internal_error", "internal_error", seq=None, detail=detail)
            return self._ack("rejected", None, 0, "internal_error", detail), 0
        if status == "applied":
            self._log.info("key_sync_applied", seq=seq, changes=changes)
        return self._ack(status, seq, changes, None, None), changes

    def _authenticate(self, payload: bytes) -> tuple[int, bytes, _Ops | None]:
        """Envelope → MAC → body → gateway and sequence checks. ``ops`` None: duplicate."""
        if len(payload) > MAX_PAYLOAD:
            raise SyncRejected("malformed", f"payload of {len(payload)} bytes")
        envelope = _json_object(payload, "envelope")
        _check_version(envelope.get("v"), "envelope", None)
        body_text, mac_hex = envelope.get("body"), envelope.get("hmac_sha256")
        if not isinstance(body_text, str) or not isinstance(mac_hex, str):
            raise SyncRejected("malformed", "envelope needs string body and hmac_sha256")
        if not _MAC_HEX.fullmatch(mac_hex):
            raise SyncRejected("malformed", "hmac_sha256 must be 64 hex digits")
        try:
            body_bytes = body_text.encode()
        except UnicodeEncodeError:
            raise SyncRejected("malformed", "body is not valid Unicode text") from None
        expected = hmac.new(self._secret, body_bytes, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, mac_hex.lower()):
            raise SyncRejected("bad_mac", "HMAC-SHA256 over body does not verify")
        body = _json_object(body_bytes, "body")
        seq = body.get("seq")
        if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
            raise SyncRejected("malformed", f"body seq must be an integer within 0..{MAX_SEQ}")
        _check_version(body.get("v"), "body", seq)
        gateway_id = body.get("gateway_id")
        if not isinstance(gateway_id, str):
            raise SyncRejected("malformed", "body gateway_id must be a string", seq)
        if gateway_id.lower() != self._gateway_id:
            raise SyncRejected("wrong_gateway", "message is for another gateway", seq)
        digest = hashlib.sha256(body_bytes).digest()
        last_seq, last_digest = self._read_state()
        if seq < last_seq:
            raise SyncRejected("stale_seq", f"seq {seq} is below the last applied {last_seq}", seq)
        if seq == last_seq:
            if hmac.compare_digest(digest, last_digest):
                return seq, digest, None
            raise SyncRejected("seq_reused", f"seq {seq} was applied with other content", seq)
        return seq, digest, _parse_ops(body.get("ops"), seq)

    def _read_state(self) -> tuple[int, bytes]:
        try:
            return self._store.sync_state()
        except KeyStoreError as exc:
            raise SyncRejected("store_error", str(exc)) from exc

    def _apply(self, seq: int, digest: bytes, ops: _Ops | None) -> tuple[str, int]:
        if ops is None:
            return "duplicate", 0
        try:
            applied = self._store.apply(ops.sessions, ops.roots, ops.remove, sync=(seq, digest))
        except KeyStoreError as exc:
            raise SyncRejected("store_error", str(exc), seq) from exc
        self._index.apply(applied.stored, applied.roots, applied.removed)
        return "applied", applied.changes

    def _ack(
        self, status: str, seq: int | None, changes: int, error: str | None, detail: str | None
    ) -> bytes:
        ack = {"v": SYNC_VERSION, "gateway_id": self._gateway_id, "seq": seq,
               "status": status, "changes": changes, "error": error, "detail": detail}
        return json.dumps(ack, separators=(",", ":")).encode()


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = loads_bounded(raw)
    except JsonInputError as exc:
        raise SyncRejected("malformed", f"{what}: {exc}") from None
    if not isinstance(value, dict):
        raise SyncRejected("malformed", f"{what} is not a JSON object")
    return value


def _check_version(value: object, what: str, seq: int | None) -> None:
    """Exactly the integer 1: ``true`` equals 1 in Python but is not a version."""
    if type(value) is not int or value != SYNC_VERSION:
        shown = repr(value) if isinstance(value, int | float | str | None) else type(value).__name__
        raise SyncRejected("unsupported_version", f"{what} v={shown[:40]}", seq)


def _parse_ops(raw: object, seq: int) -> _Ops:
    """Validate every op first; the first bad one rejects the whole message."""
    if not isinstance(raw, list) or len(raw) > MAX_OPS:
        raise SyncRejected("malformed", f"ops must be a list of at most {MAX_OPS}", seq)
    ops = _Ops([], [], [])
    for i, op in enumerate(raw):
        try:
            _parse_op(op, ops)
        except RecordError as exc:
            raise SyncRejected("invalid_op", f"ops[{i}] {exc}", seq) from exc
    return ops


def _parse_op(op: object, ops: _Ops) -> None:
    if not isinstance(op, dict):
        raise RecordError("op", "must be an object")
    kind = op.get("op")
    if kind == "remove":
        ops.remove.append(parse_hex(op.get("dev_eui"), "dev_eui", 8).hex())
    elif kind == "upsert":
        session, root = records_from_fields({k: v for k, v in op.items() if k != "op"})
        if session is not None:
            ops.sessions.append(session)
        if root is not None:
            ops.roots.append(root)
    else:
        raise RecordError("op", "must be \"upsert\" or \"remove\"")


def sign_message(secret: bytes, body: dict[str, Any]) -> bytes:
    """Build an authenticated message (the network side's half; tests and tools)."""
    body_text = json.dumps(body, separators=(",", ":"))
    mac = hmac.new(secret, body_text.encode(), hashlib.sha256).hexdigest()
    return json.dumps({"v": SYNC_VERSION, "body": body_text, "hmac_sha256": mac}).encode()
