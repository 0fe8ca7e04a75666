"""FrameStore on its own: real SQLite files, real errors."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from buffer.schema import MIGRATIONS, user_version
from buffer.store import AgeLimit, CommitPlan, FrameStore, StoreError, row_size
from buffer.types import UplinkRecord


def rec(seq: int, device: str = "d1", body: bytes = b"payload", *, boot: str = "b",
        mono: int = 0, wall: int = 0, synced: bool = True) -> UplinkRecord:
    return UplinkRecord(seq, device, body, wall, mono, boot, synced)


def opened(path: Path, **kw: object) -> FrameStore:
    store = FrameStore(path, **kw)  # type: ignore[arg-type]
    store.open()
    return store


def test_append_read_delete_round_trip(tmp_path: Path) -> None:
    store = opened(tmp_path / "b.sqlite")
    records = [rec(i, f"d{i % 2}", bytes([i]) * i) for i in range(1, 8)]
    store.append_many(records)
    assert store.read_batch(0, 100) == records
    assert store.read_batch(3, 2) == records[3:5]
    assert store.device_backlog_counts() == {"d0": 3, "d1": 4}
    assert store.bytes == sum(row_size(r) for r in records)
    store.delete_many([2, 4, 99])
    assert [r.seq for r in store.read_batch(0, 100)] == [1, 3, 5, 6, 7]
    assert store.rows == 5
    store.close()
    info = FrameStore(tmp_path / "b.sqlite").open()
    assert (info.rows, info.max_seq, info.device_counts) == (5, 7, {"d0": 1, "d1": 4})


def test_wal_and_full_sync(tmp_path: Path) -> None:
    """FULL: each grouped commit fsyncs the WAL, so a returned commit survives a power cut."""
    store = opened(tmp_path / "b.sqlite")
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2


def test_page_cache_is_capped_and_a_store_larger_than_it_reads_back_whole(
        tmp_path: Path) -> None:
    """A burst must not leave SQLite's default 2 MB page cache resident; a store several
    times the capped cache still reads back every row and deletes from the front."""
    store = opened(tmp_path / "b.sqlite")
    assert store.conn.execute("PRAGMA cache_size").fetchone()[0] == -256
    rng = random.Random(5)
    records = [rec(i, f"d{i % 7}", rng.randbytes(90)) for i in range(1, 20_001)]
    for start in range(0, len(records), 500):  # grouped commits, as the buffer makes them
        store.append_many(records[start:start + 500])
    assert store.conn.execute("PRAGMA page_count").fetchone()[0] * 512 > 4 * 256 * 1024
    store.delete_many(r.seq for r in records[:15_000])
    assert store.read_batch(0, 10_000) == records[15_000:]
    store.close()
    assert FrameStore(tmp_path / "b.sqlite").open().rows == 5_000


def test_bytes_bound_drops_oldest(tmp_path: Path) -> None:
    store = opened(tmp_path / "b.sqlite")
    records = [rec(i, body=b"z" * 100) for i in range(1, 11)]
    store.append_many(records)
    limit = 4 * row_size(records[0])
    dropped = store.enforce_bounds(limit, None)
    assert [d.seq for d in dropped] == [1, 2, 3, 4, 5, 6]
    assert {d.reason for d in dropped} == {"max_bytes"}
    assert [r.seq for r in store.read_batch(0, 100)] == [7, 8, 9, 10]
    assert store.bytes <= limit


def test_age_bound_uses_monotonic_within_boot_and_wall_across_boots(tmp_path: Path) -> None:
    store = opened(tmp_path / "b.sqlite")
    store.append_many([
        rec(1, boot="old", wall=100, synced=True),     # other boot, wall says old: expired
        rec(2, boot="old", wall=100, synced=False),    # other boot, clock unknown: kept
        rec(3, boot="now", mono=50),                   # this boot, old: expired
        rec(4, boot="now", mono=5000),                 # this boot, fresh: stops the scan
        rec(5, boot="now", mono=10),                   # behind a fresh one: left for later
    ])
    dropped = store.enforce_bounds(10**9, AgeLimit("now", min_monotonic_ns=1000,
                                                   min_received_ns=1000))
    assert [(d.seq, d.reason) for d in dropped] == [(1, "max_age"), (3, "max_age")]
    assert [r.seq for r in store.read_batch(0, 100)] == [2, 4, 5]


def test_garbage_file_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    path.write_bytes(b"this is not a database at all" * 200)
    info = FrameStore(path).open()
    assert info.moved_aside is not None and info.moved_aside.name.startswith("b.sqlite.corrupt-")
    assert info.moved_aside.read_bytes().startswith(b"this is not")
    assert info.rows == 0 and user_version(sqlite3.connect(path)) == len(MIGRATIONS)


def test_damaged_page_is_caught_by_quick_check(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    store = opened(path)
    noise = random.Random(1)  # incompressible: the file must span many pages
    store.append_many([rec(i, body=noise.randbytes(1024)) for i in range(1, 200)])
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 6 * page
    data[3 * page:5 * page] = b"\xa5" * (2 * page)  # smash two b-tree pages
    path.write_bytes(bytes(data))
    info = FrameStore(path).open()
    assert info.moved_aside is not None
    assert info.rows == 0


def test_v0_file_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    sqlite3.connect(path).close()  # an empty file at user_version 0
    store = opened(path)
    assert user_version(store.conn) == len(MIGRATIONS)
    store.append_many([rec(1)])
    assert store.rows == 1


def test_next_migration_keeps_rows(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    store = opened(path)
    store.append_many([rec(1), rec(2, "d2")])
    store.close()

    def v2(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE frames ADD COLUMN note TEXT")

    upgraded = FrameStore(path, migrations=(*MIGRATIONS, v2))
    info = upgraded.open()
    assert user_version(upgraded.conn) == len(MIGRATIONS) + 1 and info.rows == 2
    assert [r.seq for r in upgraded.read_batch(0, 10)] == [1, 2]


def test_newer_schema_is_moved_aside_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    info = FrameStore(path).open()
    assert info.moved_aside is not None and ".newer-" in info.moved_aside.name
    assert user_version(sqlite3.connect(info.moved_aside)) == 99


def test_disk_full_rolls_back_whole_commit(tmp_path: Path) -> None:
    store = opened(tmp_path / "b.sqlite")
    store.append_many([rec(1)])
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    store.conn.execute(f"PRAGMA max_page_count = {pages}")
    plan = CommitPlan([rec(i, body=b"q" * 3000) for i in range(2, 50)], [1], 10**9, None, 10)
    with pytest.raises(StoreError) as err:
        store.commit(plan)
    assert "full" in str(err.value)
    assert not store.conn.in_transaction
    assert (store.rows, [r.seq for r in store.read_batch(0, 10)]) == (1, [1])
    store.conn.execute("PRAGMA max_page_count = 1000000")
    result = store.commit(plan)
    assert result.rows == 48 and store.read_batch(0, 1)[0].seq == 2


def test_commit_writes_high_water(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    store = opened(path)
    store.commit(CommitPlan([rec(5)], [], 10**9, None, 1234))
    store.commit(CommitPlan([], [5], 10**9, None, None))
    store.close()
    assert FrameStore(path).open().max_seq == 1234


def test_unopenable_path_raises_store_error(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(StoreError):
        FrameStore(tmp_path / "dir").open()


def test_emptied_large_store_is_shrunk_and_wal_is_limited(tmp_path: Path) -> None:
    """A long outage's space is given back once the backlog has drained, not before."""
    path = tmp_path / "b.sqlite"
    store = FrameStore(path, shrink_above=256 * 1024)
    store.open()
    assert store.conn.execute("PRAGMA journal_size_limit").fetchone()[0] == 4 * 1024 * 1024
    noise = random.Random(2)  # incompressible bodies: the file really grows
    records = [UplinkRecord(i, f"d{i % 7}", noise.randbytes(200), i, i, "b", True)
               for i in range(1, 5001)]
    age = AgeLimit("b", 0, 0)
    store.commit(CommitPlan(records, [], 10**9, age))
    grown = store.file_bytes()
    assert grown > 256 * 1024
    store.commit(CommitPlan([], list(range(1, 2501)), 10**9, age))
    assert store.file_bytes() >= grown // 2  # rows remain: free pages are kept for reuse
    store.commit(CommitPlan([], list(range(2501, 5001)), 10**9, age))
    assert store.rows == 0 and store.file_bytes() < 64 * 1024
    store.close()
