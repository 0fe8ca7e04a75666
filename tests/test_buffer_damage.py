"""Damaged rows and files the gateway did not write: nothing stops the buffer or a device.

Real SQLite files, damaged with a second connection (a column's type changed, a
checksum bit flipped, a body altered) or bit by bit on disk; the buffer is then
opened as the daemon opens it and everything it holds is delivered.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
from collections import defaultdict
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from buffer.schema import MIGRATIONS, user_version
from buffer.store import FrameStore, StoreError
from buffer.types import AckCallback, Delivery, UndeliverableError, UplinkRecord
from tests.support.buffer import FakeSink, make_buffer, run, submit

DEVICES = ("dA", "dB", "dC")


def fill(path: Path, per_device: int = 5) -> list[int]:
    """A buffer file holding ``per_device`` frames of each device (sink down), as a crash
    would leave it. Returns the seqs in order."""
    async def go() -> list[int]:
        sink = FakeSink(up=False)
        buf = make_buffer(path, sink)
        await buf.open()
        seqs: list[int] = []
        for i in range(per_device):
            for d in DEVICES:
                seqs += submit(buf, d, body=f"{d}-{i}".encode())
        await buf.flush()
        await buf.abort()
        return seqs
    return run(go())


def damage(path: Path, sql: str, seq: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute(sql, (seq,))
    conn.commit()
    conn.close()


def deliver_all(path: Path, sink: FakeSink | None = None) -> tuple[FakeSink, dict[str, int]]:
    """Open the file like the daemon does, deliver everything, return what was sent."""
    sink = sink or FakeSink(auto_ack=True)

    async def go() -> dict[str, int]:
        buf = make_buffer(path, sink)
        await buf.open()
        for _ in range(50):
            await buf.settle()
            await asyncio.sleep(0)
        submit(buf, "dA", body=b"dA-live")  # a later frame of a device that had a bad row
        for _ in range(20):
            await buf.settle()
            await buf.flush()
            await asyncio.sleep(0)
        stats = buf.stats()
        await buf.close()
        assert stats.depth == 0, stats
        return stats.dropped
    return sink, run(go())


def bodies(sink: FakeSink) -> dict[str, list[bytes]]:
    found: dict[str, list[bytes]] = defaultdict(list)
    for d in sink.log:
        found[d.record.device].append(d.record.body)
    return found


def quarantine(path: Path) -> list[tuple[int, str]]:
    conn = sqlite3.connect(path)
    try:
        return [(int(s), str(r)) for s, r in conn.execute(
            "SELECT seq, reason FROM quarantine ORDER BY id")]
    finally:
        conn.close()


DAMAGES = {
    "body_type_oldest": ("UPDATE frames SET body = CAST(body AS TEXT) WHERE seq = ?", 0),
    "int_type_middle": ("UPDATE frames SET monotonic_ns = monotonic_ns + 0.25 WHERE seq = ?", 7),
    "device_type_middle": ("UPDATE frames SET device = CAST(device AS BLOB) WHERE seq = ?", 6),
    "checksum_bit": ("UPDATE frames SET crc = (crc | 1) - (crc & 1) WHERE seq = ?", 9),  # xor
    "body_changed": ("UPDATE frames SET body = X'00' || body WHERE seq = ?", 3),
    "crc_missing": ("UPDATE frames SET crc = NULL WHERE seq = ?", 14),
    "unknown_boot": ("UPDATE frames SET boot = 99 WHERE seq = ?", 4),
    "unknown_dictionary": ("UPDATE frames SET codec = 77 WHERE seq = ?", 8),
    "text_in_int": ("UPDATE frames SET received_ns = 'x' || received_ns WHERE seq = ?", 12),
}


@pytest.mark.parametrize("kind", sorted(DAMAGES))
def test_damaged_row_is_quarantined_and_the_rest_delivered(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "b.sqlite"
    seqs = fill(path)
    sql, index = DAMAGES[kind]
    bad_seq = seqs[index]
    conn = sqlite3.connect(path)
    bad_device = conn.execute("SELECT device FROM frames WHERE seq = ?", (bad_seq,)).fetchone()[0]
    conn.close()
    damage(path, sql, bad_seq)
    with capture_logs() as logs:
        sink, dropped = deliver_all(path)
    assert dropped == {"quarantined": 1}
    lines = [e for e in logs if e["event"] == "buffer_row_quarantined"]
    assert len(lines) == 1 and lines[0]["seq"] == bad_seq and lines[0]["path"] == str(path)
    assert lines[0]["log_level"] == "error"
    assert [s for s, _ in quarantine(path)] == [bad_seq]
    got = bodies(sink)
    for i in range(5):
        for d in DEVICES:
            frame = f"{d}-{i}".encode()
            expected = 0 if (d == bad_device and seqs[i * 3 + DEVICES.index(d)] == bad_seq) else 1
            assert got[d].count(frame) == expected, (d, i)
    assert got["dA"][-1] == b"dA-live"  # the device's later frames go on, in order
    assert [b for b in got["dA"] if b != b"dA-live"] == sorted(
        b for b in got["dA"] if b != b"dA-live")
    assert not any(e["log_level"] == "critical" or "exc_info" in e for e in logs)


class RejectingSink(FakeSink):
    """The MQTT sink's behaviour for a body that is not an UplinkFrame."""

    def send(self, delivery: Delivery, on_result: AckCallback) -> None:
        if delivery.record.body.startswith(b"\xff"):
            raise UndeliverableError("body is not an UplinkFrame")
        super().send(delivery, on_result)


@pytest.mark.parametrize("held", [True, False])
def test_bad_body_is_quarantined_not_retried(tmp_path: Path, held: bool) -> None:
    path = tmp_path / "b.sqlite"

    async def go() -> tuple[RejectingSink, dict[str, int]]:
        sink = RejectingSink(up=not held, auto_ack=True)
        buf = make_buffer(path, sink)
        await buf.open()
        submit(buf, "dA", body=b"ok-1")
        submit(buf, "dA", body=b"\xff\xff not a frame")
        submit(buf, "dA", body=b"ok-2")
        await buf.flush()
        if held:
            sink.up = True
            buf.sink_ready()
        for _ in range(10):
            await buf.settle()
            await buf.flush()
            await asyncio.sleep(0)
        submit(buf, "dA", body=b"ok-3")
        await buf.flush()
        stats = buf.stats()
        await buf.close()
        assert stats.depth == 0
        return sink, stats.dropped

    with capture_logs() as logs:
        sink, dropped = run(go())
    assert [d.record.body for d in sink.log] == [b"ok-1", b"ok-2", b"ok-3"]
    assert dropped == {"quarantined": 1}
    assert [r for _, r in quarantine(path)] == ["body is not an UplinkFrame"]
    assert sum(e["event"] == "buffer_row_quarantined" for e in logs) == 1


def test_single_bit_flips_never_stop_the_buffer(tmp_path: Path) -> None:
    """Flip one bit anywhere in a 45-frame file: open never raises, and every frame is
    delivered, quarantined (counted), or the whole file is moved aside (logged)."""
    master = tmp_path / "master.sqlite"
    fill(master, per_device=15)
    conn = sqlite3.connect(master)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    image = master.read_bytes()
    rng = random.Random(13)
    outcomes: dict[str, int] = defaultdict(int)
    for n in range(300):
        path = tmp_path / f"f{n}" / "b.sqlite"
        path.parent.mkdir()
        flipped = bytearray(image)
        bit = rng.randrange(len(flipped) * 8)
        flipped[bit // 8] ^= 1 << (bit % 8)
        path.write_bytes(bytes(flipped))
        with capture_logs() as logs:
            sink, dropped = deliver_all(path)
        moved = any(e["event"] == "buffer_store_moved_aside" for e in logs)
        delivered = len(sink.log) - 1  # minus the live frame
        if moved:
            outcomes["moved_aside"] += 1
        elif dropped:
            outcomes["quarantined"] += 1
            assert delivered + dropped["quarantined"] == 45, (bit, dropped)
        else:
            outcomes["intact"] += 1
            assert delivered == 45, bit
    assert outcomes["intact"] > 0


# --- files the gateway did not write ------------------------------------------------------


def test_v1_file_is_migrated_with_its_rows_and_checksums(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    conn = sqlite3.connect(path)
    MIGRATIONS[0](conn)
    conn.execute("PRAGMA user_version = 1")
    conn.executemany("INSERT INTO frames VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [
        (1, "dA", b"one", 10, 11, "boot-1", 1, 40),
        (2, "dB", b"two", 20, 21, "boot-2", 0, 40),
        (3, "dA", "text body", 30, 31, "boot-1", 1, 40),  # damaged before the migration
    ])
    conn.commit()
    conn.close()
    store = FrameStore(path)
    info = store.open()
    assert (info.rows, info.quarantined, info.device_counts) == (2, 1, {"dA": 1, "dB": 1})
    got = [(r.seq, r.device, r.body, r.received_ns, r.monotonic_ns, r.boot_id, r.clock_synced)
           for r in store.read_batch(0, 10)]
    assert got == [(1, "dA", b"one", 10, 11, "boot-1", True),
                   (2, "dB", b"two", 20, 21, "boot-2", False)]
    assert user_version(store.conn) == len(MIGRATIONS)
    store.close()


def test_unversioned_file_with_our_tables_is_adopted(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    conn = sqlite3.connect(path)
    MIGRATIONS[0](conn)  # v1 tables, but user_version left at 0
    conn.execute("INSERT INTO frames VALUES (5, 'dA', X'01', 1, 1, 'b', 1, 40)")
    conn.commit()
    conn.close()
    with capture_logs() as logs:
        info = FrameStore(path).open()
    assert info.moved_aside is None and info.rows == 1 and info.device_counts == {"dA": 1}
    assert any(e["event"] == "buffer_store_adopted_unversioned" for e in logs)


@pytest.mark.parametrize("ddl", [
    ["CREATE TABLE frames (id INTEGER PRIMARY KEY, payload BLOB)"],          # user_version 0
    ["CREATE TABLE frames (seq INTEGER PRIMARY KEY, data BLOB NOT NULL)",    # ours by number
     "CREATE TABLE meta (key TEXT, value INTEGER)", "PRAGMA user_version = 2"],
    ["CREATE TABLE things (x)"],
])
def test_foreign_schema_is_moved_aside_with_a_line_naming_it(tmp_path: Path,
                                                             ddl: list[str]) -> None:
    path = tmp_path / "b.sqlite"
    conn = sqlite3.connect(path)
    for sql in ddl:
        conn.execute(sql)
    conn.commit()
    conn.close()
    with capture_logs() as logs:
        store = FrameStore(path)
        info = store.open()
    assert info.moved_aside is not None and ".foreign-" in info.moved_aside.name
    assert info.moved_aside.exists()
    lines = [e for e in logs if e["event"] == "buffer_store_moved_aside"]
    assert len(lines) == 1 and lines[0]["path"] == str(path)
    assert user_version(store.conn) == len(MIGRATIONS)
    store.close()


def test_unknown_failure_at_open_moves_aside_once(tmp_path: Path) -> None:
    """Not understood (here a bug in a migration step): moved aside, fresh file, one line."""
    path = tmp_path / "b.sqlite"
    FrameStore(path).open()
    calls = []

    def broken(conn: sqlite3.Connection) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("not understood")

    with capture_logs() as logs:
        info = FrameStore(path, migrations=(*MIGRATIONS, broken)).open()
    assert info.moved_aside is not None and ".unreadable-" in info.moved_aside.name
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["buffer_store_moved_aside"]


@pytest.mark.parametrize("kind", ["directory", "devnull"])
def test_path_that_is_not_a_file_is_refused_loudly_never_renamed(tmp_path: Path,
                                                                 kind: str) -> None:
    if kind == "directory":
        path = tmp_path / "b.sqlite"
        path.mkdir()
    else:
        path = Path(os.devnull)
    with pytest.raises(StoreError) as err:
        FrameStore(path).open()
    assert str(path) in str(err.value)
    assert path.exists() and not path.is_file()

    async def go() -> None:
        sink = FakeSink(auto_ack=True)
        buf = make_buffer(path, sink, commit_interval_s=0.01)
        await buf.open()
        submit(buf, "dA")
        await asyncio.sleep(0.1)
        stats = buf.stats()
        await buf.close()
        assert sink.sent_seqs() and not stats.storage_ok

    with capture_logs() as logs:
        run(go())
    errors = [e for e in logs if e["event"] == "buffer_storage_error"]
    assert len(errors) == 1  # rate limited: one a minute while memory-only
    assert errors[0]["path"] == str(path) and errors[0]["log_level"] == "error"
    assert path.exists() and not path.is_file()


def test_bodies_are_stored_deflated_and_read_back_exactly(tmp_path: Path) -> None:
    """Serialised UplinkFrames repeat most of their bytes: stored deflated with the
    file's dictionary, read back byte for byte; a damaged deflated body is quarantined."""
    path = tmp_path / "b.sqlite"
    store = FrameStore(path)
    store.open()
    rng = random.Random(5)
    template = bytes(range(40)) + b"0016c001ff10a235" + bytes(30)
    records = [UplinkRecord(i, "dA", template + rng.randbytes(12), i, i, "boot", True)
               for i in range(1, 101)]
    store.append_many(records)
    conn = sqlite3.connect(path)
    stored = conn.execute("SELECT AVG(LENGTH(body)), MIN(codec) FROM frames").fetchone()
    assert stored[0] < 0.6 * len(records[0].body) and stored[1] > 0
    conn.execute("UPDATE frames SET body = X'00' || body WHERE seq = 50")
    conn.commit()
    conn.close()
    assert store.read_batch(0, 1000) == [r for r in records if r.seq != 50]
    assert store.quarantine_count() == 1
    store.close()
