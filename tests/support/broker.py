"""A real Mosquitto for tests: own config, free loopback port, killable and restartable.

Tests of the MQTT link must see what a real broker does when it dies (RST, no
PUBACK, will delivery), so nothing here is mocked. ``restart`` keeps the port so
the link under test reconnects to the same address.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.sim.local_broker import LocalBroker, find_mosquitto


def require_mosquitto() -> str:
    """The one Mosquitto gate: the binary; fails in CI (it must be installed there), skips
    elsewhere with the install hint."""
    binary = find_mosquitto()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("mosquitto is required in CI")
        pytest.skip("install mosquitto to run the MQTT tests")
    return binary


class MosquittoBroker(LocalBroker):
    """The demo's loopback broker plus what tests need: users, ACLs, TLS, freeze/thaw.

    ``users`` maps user name to password: when given, anonymous clients are refused.
    ``acl`` is the text of an ACL file (optional).
    """

    def __init__(self, workdir: Path, *, binary: str | None = None,
                 users: dict[str, str] | None = None, acl: str | None = None,
                 tls: tuple[Path, Path, Path] | None = None) -> None:
        super().__init__(workdir, binary=binary)
        self.users = users
        self.acl = acl
        self.tls = tls
        """``(ca_cert, server_cert, server_key)`` PEM files: the listener then speaks TLS only."""

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    def __enter__(self) -> MosquittoBroker:
        self.start()
        return self

    def __exit__(self, _t: type[BaseException] | None, _e: BaseException | None,
                 _tb: TracebackType | None) -> None:
        self.stop()

    def config_lines(self) -> list[str]:
        lines = [line for line in super().config_lines()
                 if not line.startswith("allow_anonymous")]
        lines.append(f"allow_anonymous {'false' if self.users else 'true'}")
        if self.users:
            lines.append(f"password_file {self._write_passwords()}")
        if self.tls is not None:
            ca, cert, key = self.tls
            lines += [f"cafile {ca}", f"certfile {cert}", f"keyfile {key}"]
        if self.acl is not None:
            acl_file = self.workdir / "acl"
            acl_file.write_text(self.acl)
            lines.append(f"acl_file {acl_file}")
        return lines

    def _write_passwords(self) -> Path:
        """Hashed with mosquitto's own tool, so the format is whatever this version reads."""
        assert self.users
        tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        path = self.workdir / "passwd"
        path.write_text("")
        for user, password in self.users.items():
            subprocess.run([tool, "-b", str(path), user, password], check=True,
                           capture_output=True, timeout=10)
        return path

    def freeze(self) -> None:
        """SIGSTOP: the kernel still accepts bytes, the broker answers nothing (no PUBACK)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool


class Subscriber:
    """A blocking paho subscriber on its own thread that records what a filter matches."""

    def __init__(self, port: int, topic_filter: str, *, client_id: str = "") -> None:
        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self._filter = topic_filter
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_connect = lambda c, *_: c.subscribe(self._filter, qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 2)
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            self.close()
            raise TimeoutError(f"subscriber for {topic_filter} did not subscribe")

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain)))
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout_s: float = 10.0,
                 ) -> list[Received]:
        """Block until ``predicate(messages)`` holds; returns a snapshot of the messages."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self.messages), timeout_s):
                raise TimeoutError(f"condition not met on {self._filter}: {self.messages!r}")
            return list(self.messages)

    def snapshot(self) -> list[Received]:
        with self._cond:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_once(port: int, topic: str, payload: bytes, *, retain: bool = False) -> None:
    """Publish one QoS 1 message and wait for its PUBACK (a stand-in network server)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout=10)
        if not info.is_published():
            raise TimeoutError(f"no PUBACK for {topic}")
    finally:
        client.disconnect()
        client.loop_stop()


class TcpProxy:
    """An asyncio TCP relay in front of the broker that a test can black-hole or cut.

    ``black_hole`` keeps the connections open but forwards nothing (a half-open
    line as seen by both ends); ``cut()`` aborts every connection at once (RST to
    both ends), so the broker publishes the client's last will.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.black_hole = False
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._writers |= {writer, up_writer}
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await src.read(65536):
                if not self.black_hole:
                    dst.write(data)
                    await dst.drain()
        dst.transport.abort()
        self._writers.discard(dst)

    def cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
