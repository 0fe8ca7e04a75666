"""Fakes shared by the buffer tests: a sink whose acknowledgements the test controls, a clock."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from buffer.config import BufferConfig
from buffer.store import FrameStore
from buffer.types import AckCallback, Delivery
from buffer.uplink_buffer import UplinkBuffer
from tests.support.fakes import FakeClock

T = TypeVar("T")
BOOT = "boot-a"


@dataclass
class FakeSink:
    """Records every delivery; acks and failures happen when the test says so."""

    up: bool = True
    window: int = 1_000_000
    auto_ack: bool = False
    log: list[Delivery] = field(default_factory=list)
    inflight: dict[int, tuple[Delivery, AckCallback]] = field(default_factory=dict)

    def can_send(self) -> bool:
        return self.up and len(self.inflight) < self.window

    def send(self, delivery: Delivery, on_result: AckCallback) -> None:
        self.log.append(delivery)
        if self.auto_ack:
            on_result(True)
        else:
            self.inflight[delivery.record.seq] = (delivery, on_result)

    def ack(self, seq: int, ok: bool = True) -> None:
        _, cb = self.inflight.pop(seq)
        cb(ok)

    def ack_all(self, ok: bool = True) -> None:
        for seq in list(self.inflight):
            self.ack(seq, ok)

    def disconnect(self) -> None:
        self.up = False
        self.ack_all(False)

    def sent_seqs(self) -> list[int]:
        return [d.record.seq for d in self.log]


def make_config(path: Path, **kw: Any) -> BufferConfig:
    kw.setdefault("commit_interval_s", 3600.0)  # tests commit explicitly with flush()
    kw.setdefault("drain_rate_per_s", 0.0)
    return BufferConfig(path=path, **kw)


def make_buffer(path: Path, sink: FakeSink, clock: FakeClock | None = None,
                **kw: Any) -> UplinkBuffer:
    return UplinkBuffer(make_config(path, **kw), sink, boot_id=BOOT,
                        clock=clock or FakeClock())


def submit(buf: UplinkBuffer, device: str, n: int = 1, body: bytes = b"x" * 20,
           clock: FakeClock | None = None) -> list[int]:
    clock = clock or FakeClock()
    return [buf.submit(device, body, received_ns=clock.wall, monotonic_ns=clock.mono,
                       clock_synced=True) for _ in range(n)]


def rows(path: Path) -> list[tuple[int, str]]:
    """What is really in the file, read with a separate connection."""
    conn = sqlite3.connect(path)
    try:
        found = conn.execute("SELECT seq, device FROM frames ORDER BY seq")
        return [(int(s), str(d)) for s, d in found]
    finally:
        conn.close()


def run(coro: Coroutine[Any, Any, T]) -> T:
    import asyncio
    return asyncio.run(coro)


def store_at(path: Path) -> FrameStore:
    return FrameStore(path)


class Switch:
    """Makes the next INSERTs fail as a full disk, or as a corrupt file, while set."""

    full = False
    corrupt = False


def flaky_store(switch: Switch) -> Callable[[Path], FrameStore]:
    class Flaky(sqlite3.Connection):
        def executemany(self, sql: str, params: Any, /) -> sqlite3.Cursor:
            if sql.lstrip().upper().startswith("INSERT"):
                if switch.full:
                    raise sqlite3.OperationalError("database or disk is full")
                if switch.corrupt:
                    err = sqlite3.DatabaseError("database disk image is malformed")
                    err.sqlite_errorcode = 11
                    raise err
            return super().executemany(sql, params)

    def connect(path: str) -> sqlite3.Connection:
        return sqlite3.connect(path, isolation_level=None, factory=Flaky)

    return lambda p: FrameStore(p, connect=connect)
