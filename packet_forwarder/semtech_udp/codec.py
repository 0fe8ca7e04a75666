"""Datagrams of the Semtech UDP protocol v2 as typed values, and back to bytes.

Header layouts are PROTOCOL.TXT §3.2-3.3 and §5.2-5.5 (Lora-net/packet_forwarder):
byte 0 version (2), bytes 1-2 token, byte 3 identifier; PUSH_DATA, PULL_DATA and
TX_ACK then carry the 8-byte gateway EUI; PUSH_DATA, PULL_RESP and TX_ACK carry a
JSON object. Everything here is pure so garbage can be thrown at it in tests.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any

VERSION = 2
_EUI_LEN = 8


class DatagramError(ValueError):
    """A datagram that is not a well-formed protocol v2 message (one log line, dropped)."""


class Kind(enum.IntEnum):
    """The identifier byte (byte 3)."""

    PUSH_DATA = 0x00
    PUSH_ACK = 0x01
    PULL_DATA = 0x02
    PULL_RESP = 0x03
    PULL_ACK = 0x04
    TX_ACK = 0x05


_HAS_EUI = {Kind.PUSH_DATA, Kind.PULL_DATA, Kind.TX_ACK}
_HAS_JSON = {Kind.PUSH_DATA, Kind.PULL_RESP}
"""TX_ACK's JSON is optional (empty means "no error"), so it is not listed as required."""


@dataclass(frozen=True, slots=True)
class Datagram:
    kind: Kind
    token: int
    eui: bytes = b""
    """The gateway EUI for the kinds that carry it, else empty."""
    body: dict[str, Any] = field(default_factory=dict)
    """The JSON object for the kinds that carry one, else empty."""


def encode(dgram: Datagram) -> bytes:
    """The datagram's bytes; JSON is compact (no spaces) as the reference forwarder sends it."""
    if not 0 <= dgram.token <= 0xFFFF:
        raise ValueError(f"token {dgram.token} does not fit in 16 bits")
    head = bytes((VERSION, dgram.token >> 8, dgram.token & 0xFF, dgram.kind))
    if dgram.kind in _HAS_EUI:
        if len(dgram.eui) != _EUI_LEN:
            raise ValueError(f"gateway EUI must be {_EUI_LEN} bytes, got {len(dgram.eui)}")
        head += dgram.eui
    if dgram.kind in _HAS_JSON or (dgram.kind is Kind.TX_ACK and dgram.body):
        head += json.dumps(dgram.body, separators=(",", ":")).encode()
    return head


def decode(data: bytes) -> Datagram:
    """Parse one datagram; raises :class:`DatagramError` naming what is wrong."""
    if len(data) < 4:
        raise DatagramError(f"{len(data)} B is shorter than the 4 B header")
    if data[0] != VERSION:
        raise DatagramError(f"protocol version {data[0]}, expected {VERSION}")
    try:
        kind = Kind(data[3])
    except ValueError:
        raise DatagramError(f"unknown identifier 0x{data[3]:02x}") from None
    token = (data[1] << 8) | data[2]
    rest = data[4:]
    eui = b""
    if kind in _HAS_EUI:
        if len(rest) < _EUI_LEN:
            raise DatagramError(f"{kind.name} without its 8 B gateway EUI")
        eui, rest = rest[:_EUI_LEN], rest[_EUI_LEN:]
    body: dict[str, Any] = {}
    if kind in _HAS_JSON or (kind is Kind.TX_ACK and rest):
        body = _json_object(kind, rest)
    elif rest:
        raise DatagramError(f"{kind.name} with {len(rest)} unexpected trailing bytes")
    return Datagram(kind, token, eui, body)


def _json_object(kind: Kind, raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DatagramError(f"{kind.name} JSON does not parse: {exc}") from None
    if not isinstance(doc, dict):
        raise DatagramError(f"{kind.name} JSON is a {type(doc).__name__}, not an object")
    return doc
