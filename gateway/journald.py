"""Native journald output: structured fields a maintainer can filter on.

Under systemd, stderr lines become one MESSAGE each and every key=value inside is
lost to ``journalctl``'s field matching. Writing the journal's native protocol
instead (one datagram of ``KEY=value`` lines per event to journald's socket)
keeps each event field as its own journal field, so
``journalctl -u lora-gateway DEVADDR=26011F2A`` finds one device's frames.

The protocol is small enough to write here rather than link libsystemd: a value
without a newline is ``KEY=value\\n``; any other value is ``KEY\\n`` + its length
as 64-bit little endian + the bytes + ``\\n``. A datagram too large for the
socket is written to a sealed memfd whose descriptor is sent instead.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import os
import re
import socket
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "JOURNAL_SOCKET",
    "PRIORITIES",
    "JournalSender",
    "encode_fields",
    "event_to_fields",
    "field_name",
    "stderr_is_journal",
]

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")

PRIORITIES = {"critical": 2, "exception": 3, "error": 3, "warning": 4, "warn": 4,
              "notice": 5, "info": 6, "debug": 7}
"""structlog level name → syslog priority (journal field PRIORITY)."""

FIELD_ALIASES = {
    "dev_addr": "DEVADDR",
    "devaddr": "DEVADDR",
    "fcnt": "FCNT",
    "f_cnt": "FCNT",
    "frequency": "FREQ",
    "frequency_hz": "FREQ",
    "freq": "FREQ",
    "reason": "REASON",
    "gateway_id": "GATEWAY_ID",
    "dev_eui": "DEVEUI",
    "exception": "TRACEBACK",
}
"""Short, documented field names for what maintainers filter on most."""

UPPERCASE_VALUES = frozenset({"DEVADDR", "DEVEUI", "GATEWAY_ID"})
"""Hex identifiers are written in upper case so one spelling matches in journalctl."""

_RESERVED = frozenset({"MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "EVENT"})
_NOT_FIELD_CHARS = re.compile(r"[^A-Z0-9_]")
_MAX_FIELD_NAME = 64
_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL


def field_name(key: str) -> str:
    """The journal field name for a structlog key (upper case, ``[A-Z0-9_]``, no leading ``_``).

    journald drops fields whose names break its rules, and a leading underscore is
    reserved for fields journald itself sets (``_PID``, ``_UID``): those are
    trust-worthy only because clients cannot write them.
    """
    alias = FIELD_ALIASES.get(key.lower())
    if alias is not None:
        return alias
    name = _NOT_FIELD_CHARS.sub("_", key.upper()).lstrip("_0123456789")
    name = name[:_MAX_FIELD_NAME] or "FIELD"
    return "X_" + name if name in _RESERVED else name


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float):
        return repr(round(value, 6))
    return str(value)


def _message_value(value: Any) -> str:
    text = _text(value)
    if not text or any(c in text for c in ' "=\n'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def event_to_fields(event: Mapping[str, Any], *, identifier: str) -> dict[str, str]:
    """Turn one structlog event dict into journal fields.

    MESSAGE stays a readable one-line summary (``event key=value ...``) because it
    is what plain ``journalctl -u lora-gateway`` prints; the same values are also
    separate fields for matching.
    """
    rest = {k: v for k, v in event.items() if k not in ("event", "level", "timestamp")}
    name = str(event.get("event", ""))
    level = str(event.get("level", "info"))
    summary = " ".join([name, *(f"{k}={_message_value(v)}" for k, v in rest.items()
                                if k != "exception")])
    fields = {
        "MESSAGE": summary + ("\n" + str(rest["exception"]) if "exception" in rest else ""),
        "PRIORITY": str(PRIORITIES.get(level, 6)),
        "SYSLOG_IDENTIFIER": identifier,
        "EVENT": name,
    }
    for key, value in rest.items():
        fname = field_name(key)
        text = _text(value)
        fields[fname] = text.upper() if fname in UPPERCASE_VALUES else text
    return fields


def encode_fields(fields: Mapping[str, str | bytes]) -> bytes:
    """Serialise fields in journald's native datagram format (binary-safe where needed)."""
    out = bytearray()
    for key, value in fields.items():
        data = value.encode("utf-8", "replace") if isinstance(value, str) else value
        name = key.encode("ascii")
        if b"\n" in data:
            out += name + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += name + b"=" + data + b"\n"
    return bytes(out)


def stderr_is_journal(environ: Mapping[str, str], stderr_fd: int = 2) -> bool:
    """True when systemd connected our stderr to the journal (``JOURNAL_STREAM`` = dev:inode).

    Comparing with stderr's own device and inode tells a service's stderr apart from
    a child that merely inherited the variable but writes to a terminal or a file.
    """
    value = environ.get("JOURNAL_STREAM", "")
    dev, sep, ino = value.partition(":")
    if not sep or not dev.isdigit() or not ino.isdigit():
        return False
    try:
        st = os.fstat(stderr_fd)
    except OSError:
        return False
    return st.st_dev == int(dev) and st.st_ino == int(ino)


class JournalSender:
    """Sends field sets to journald over its datagram socket; never raises to the caller.

    Logging must not take the gateway down: a journal that is gone or full makes
    ``send`` return False and count the failure instead.
    """

    def __init__(self, path: Path = JOURNAL_SOCKET) -> None:
        self.path = path
        self.failures = 0
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def send(self, fields: Mapping[str, str | bytes]) -> bool:
        data = encode_fields(fields)
        try:
            self._sock.sendto(data, str(self.path))
            return True
        except OSError as exc:
            if exc.errno in (90, 105):  # EMSGSIZE, ENOBUFS: too large for one datagram
                return self._send_memfd(data)
            self.failures += 1
            return False

    def _send_memfd(self, data: bytes) -> bool:
        try:
            fd = os.memfd_create("journal-entry", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        except OSError:
            self.failures += 1
            return False
        try:
            os.write(fd, data)
            with contextlib.suppress(OSError):
                fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
            # socket.send_fds() would drop the address (CPython 3.11), so sendmsg directly.
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
            self._sock.sendmsg([b""], rights, 0, str(self.path))
            return True
        except OSError:
            self.failures += 1
            return False
        finally:
            os.close(fd)

    def close(self) -> None:
        self._sock.close()
