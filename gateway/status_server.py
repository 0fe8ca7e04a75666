"""The running gateway's local status endpoint: a Unix stream socket, no network port.

``lora-gateway status`` connects, sends one JSON line (``{"command": "status"}``)
and reads one JSON line back: ``{"ok": true, "status": {...}}`` with whatever the
daemon's ``snapshot()`` returns, or ``{"ok": false, "error": "..."}``. A Unix
socket keeps the gateway outbound-only on the network, and file permissions
decide who may ask: the socket is mode 0660, owned by the service user and the
admin group.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import os
import socket
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import structlog

from packet_forwarder.json_input import loads_bounded

__all__ = [
    "ADMIN_GROUP",
    "MAX_REQUEST_BYTES",
    "StatusError",
    "StatusServer",
    "default_status_socket",
    "query_status",
]

log = structlog.get_logger(__name__)

ADMIN_GROUP = "lora-gateway-admin"
MAX_REQUEST_BYTES = 4096
DEFAULT_RUNTIME_DIR = Path("/run/lora-gateway")
SOCKET_NAME = "status.sock"


class StatusError(Exception):
    """The status could not be read; the message says why in words for the CLI."""


def default_status_socket(environ: Mapping[str, str] | None = None) -> Path:
    """``$RUNTIME_DIRECTORY/status.sock`` under systemd, else ``/run/lora-gateway/status.sock``."""
    env = os.environ if environ is None else environ
    runtime = env.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return (Path(runtime) if runtime else DEFAULT_RUNTIME_DIR) / SOCKET_NAME


def _group_id(name: str | None) -> int | None:
    if not name:
        return None
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def _bind_private(path: Path, gid: int | None) -> socket.socket:
    """Bind under a temporary name, set mode and group, then rename into place.

    Nobody can connect to the final path before its permissions are right.
    """
    if path.is_socket():
        path.unlink()
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.bind(str(tmp))
        os.chmod(tmp, 0o660)
        if gid is not None and os.stat(tmp).st_gid != gid:
            # Under the unit the runtime folder is setgid to the admin group, so the
            # socket is born in it and no chown (blocked by its system-call filter) runs.
            try:
                os.chown(tmp, -1, gid)
            except PermissionError as exc:
                log.warning("status_socket_group_not_set", gid=gid, error=str(exc),
                            fix=f"make {path.parent} setgid group {ADMIN_GROUP} "
                                "(the packaged unit does), or run status as root")
        os.replace(tmp, path)
    except OSError:
        sock.close()
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return sock


class StatusServer:
    """Serves ``snapshot()`` to local clients, one request and one answer per connection."""

    def __init__(self, path: Path, snapshot: Callable[[], Mapping[str, Any]], *,
                 group: str | None = ADMIN_GROUP, read_timeout_s: float = 2.0) -> None:
        self.path = path
        self._snapshot = snapshot
        self._group = group
        self._read_timeout_s = read_timeout_s
        self._server: asyncio.AbstractServer | None = None
        self.requests = 0
        self.bad_requests = 0

    async def start(self) -> None:
        sock = _bind_private(self.path, _group_id(self._group))
        self._server = await asyncio.start_unix_server(self._handle, sock=sock,
                                                       limit=MAX_REQUEST_BYTES)
        log.info("status_socket_listening", path=str(self.path))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(OSError):
            if self.path.is_socket():
                self.path.unlink()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            answer = await self._answer(reader)
            writer.write(json.dumps(answer, default=str).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, OSError):
            pass  # the client went away; nothing to tell it
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> dict[str, Any]:
        self.requests += 1
        try:
            line = await asyncio.wait_for(reader.readline(), self._read_timeout_s)
            request = loads_bounded(line)
        except (TimeoutError, ValueError, asyncio.LimitOverrunError) as exc:  # JsonInputError too
            return self._bad("request must be one JSON line", type(exc).__name__)
        if not isinstance(request, dict) or request.get("command") != "status":
            return self._bad('unknown request (expected {"command": "status"})', "command")
        try:
            return {"ok": True, "status": dict(self._snapshot())}
        except Exception as exc:  # the endpoint must outlive a bug in one snapshot
            log.exception("status_snapshot_failed")
            return {"ok": False, "error": f"snapshot failed: {type(exc).__name__}"}

    def _bad(self, message: str, reason: str) -> dict[str, Any]:
        self.bad_requests += 1
        log.warning("status_request_rejected", reason=reason)
        return {"ok": False, "error": message}


def query_status(path: Path, timeout_s: float = 3.0) -> dict[str, Any]:
    """Ask a running gateway for its status (blocking; for the CLI)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError as exc:
        raise StatusError(f"{path} does not exist: is lora-gateway running?") from exc
    except PermissionError as exc:
        raise StatusError(f"cannot reach {path}: permission denied "
                          f"(add your user to the {ADMIN_GROUP} group)") from exc
    if not stat.S_ISSOCK(mode):
        raise StatusError(f"{path} is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.connect(str(path))
            sock.sendall(b'{"command": "status"}\n')
            data = _read_line(sock)
        except PermissionError as exc:
            raise StatusError(f"cannot connect to {path}: permission denied "
                              f"(add your user to the {ADMIN_GROUP} group)") from exc
        except ConnectionRefusedError as exc:
            raise StatusError(f"{path}: nobody is listening (lora-gateway is not running)") from exc
        except TimeoutError as exc:
            raise StatusError(f"{path}: no answer within {timeout_s:g} s") from exc
        except OSError as exc:
            raise StatusError(f"{path}: {exc.strerror or exc}") from exc
    try:
        answer = json.loads(data)
    except ValueError as exc:
        raise StatusError(f"{path}: the answer is not JSON") from exc
    if not isinstance(answer, dict) or not answer.get("ok") or not isinstance(
            answer.get("status"), dict):
        error = answer.get("error") if isinstance(answer, dict) else None
        raise StatusError(f"the gateway refused: {error or 'malformed answer'}")
    status: dict[str, Any] = answer["status"]
    return status


def _read_line(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if chunk.endswith(b"\n"):
            break
    return b"".join(chunks)
