"""Several servers, one buffer file: a frame is stored once, each server owes it apart.

Buffers of two servers (``default`` and ``city``) share one SQLite file and one seq
counter, as the daemon builds them; the sinks are fakes whose acks the test gives.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

from buffer.store import FrameStore, row_size
from buffer.types import UplinkRecord
from buffer.uplink_buffer import SeqCounter, UplinkBuffer
from gateway.servers import Router, merge_old_file, server_buffer_path
from packet_forwarder.routing import RouteFilter
from tests.support.buffer import BOOT, FakeSink, make_config, rows, run, submit
from tests.support.fakes import FakeClock


def pair(path: Path, a: FakeSink, b: FakeSink, clock: FakeClock,
         seqs: SeqCounter | None = None) -> tuple[UplinkBuffer, UplinkBuffer, Router]:
    """Server ``default`` and server ``city`` on one file, routed to both."""
    seqs = seqs if seqs is not None else SeqCounter()
    bufs = [UplinkBuffer(make_config(path), sink, boot_id=BOOT, clock=clock, seqs=seqs,
                         store_factory=lambda p, n=name: FrameStore(p, server=n))
            for sink, name in ((a, "default"), (b, "city"))]
    router = Router()
    router.add("default", RouteFilter(), bufs[0])
    router.add("city", RouteFilter(), bufs[1])
    return bufs[0], bufs[1], router


def route(router: Router, device: str, n: int, clock: FakeClock) -> list[int]:
    return [router.submit(device, b"frame-%d" % i, received_ns=clock.wall,
                          monotonic_ns=clock.mono, clock_synced=True) for i in range(n)]


def owed(path: Path) -> dict[int, int]:
    """``seq -> owed mask`` as really in the file."""
    conn = sqlite3.connect(path)
    try:
        return {int(s): int(o) for s, o in conn.execute("SELECT seq, owed FROM frames")}
    finally:
        conn.close()


async def until(cond: Callable[[], bool], tries: int = 2000) -> None:
    for _ in range(tries):
        if cond():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not reached")


def test_frame_routed_to_two_servers_is_one_row_delivered_to_both(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite"

    async def main() -> None:
        clock = FakeClock()
        a, b = FakeSink(), FakeSink()
        buf_a, buf_b, router = pair(path, a, b, clock)
        await buf_a.open()
        await buf_b.open()
        seqs = route(router, "dev1", 3, clock)
        await buf_a.flush()
        await buf_b.flush()
        assert len(rows(path)) == 3  # stored once, not once per server
        assert set(owed(path).values()) == {0b11}
        assert a.sent_seqs() == seqs and b.sent_seqs() == seqs
        a.ack_all()
        b.ack_all()
        await asyncio.sleep(0)
        await buf_a.flush()
        await buf_b.flush()
        assert rows(path) == []
        await buf_a.close()
        await buf_b.close()

    run(main())


def test_row_kept_until_the_down_server_acks(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite"

    async def main() -> None:
        clock = FakeClock()
        a, b = FakeSink(up=False), FakeSink(auto_ack=True)
        buf_a, buf_b, router = pair(path, a, b, clock)
        await buf_a.open()
        await buf_b.open()
        seqs = route(router, "dev1", 4, clock)
        assert b.sent_seqs() == seqs and a.log == []  # B's live frames never wait for A
        await buf_a.flush()
        await buf_b.flush()
        assert sorted(owed(path)) == seqs
        assert set(owed(path).values()) == {1}  # owed to default (bit 1) only
        a.up = True
        buf_a.sink_ready()
        await until(lambda: len(a.inflight) == 4)
        assert a.sent_seqs() == seqs  # per-device order kept
        a.ack_all()
        await asyncio.sleep(0)
        await buf_a.flush()
        assert rows(path) == []
        assert buf_b.stats().sent == 4  # nothing repeated to B
        await buf_a.close()
        await buf_b.close()

    run(main())


def test_restart_with_a_delivery_pending_for_one_server_only(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite"

    async def first() -> list[int]:
        clock = FakeClock()
        a, b = FakeSink(up=False), FakeSink(auto_ack=True)
        buf_a, buf_b, router = pair(path, a, b, clock)
        await buf_a.open()
        await buf_b.open()
        seqs = route(router, "dev1", 3, clock)
        await buf_a.close()
        await buf_b.close()
        return seqs

    async def second() -> tuple[FakeSink, FakeSink]:
        clock = FakeClock()
        a, b = FakeSink(auto_ack=True), FakeSink(auto_ack=True)
        buf_a, buf_b, _ = pair(path, a, b, clock)
        await buf_a.open()
        await buf_b.open()
        await until(lambda: len(a.log) == 3)
        await buf_a.flush()
        await buf_b.flush()
        await buf_a.close()
        await buf_b.close()
        return a, b

    seqs = run(first())
    assert len(rows(path)) == 3
    a, b = run(second())
    assert a.sent_seqs() == seqs
    assert b.log == []  # B had acked them: never sent again
    assert rows(path) == []


def test_frame_routed_to_one_server_takes_a_seq_no_other_server_has(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite"

    async def main() -> None:
        clock = FakeClock()
        a, b = FakeSink(up=False), FakeSink(up=False)
        buf_a, buf_b, _ = pair(path, a, b, clock)
        await buf_a.open()
        await buf_b.open()
        only_a = submit(buf_a, "dev1", 2, clock=clock)
        only_b = submit(buf_b, "dev2", 2, clock=clock)
        assert not set(only_a) & set(only_b)
        await buf_a.flush()
        await buf_b.flush()
        masks = owed(path)
        assert [masks[s] for s in only_a] == [1, 1] and [masks[s] for s in only_b] == [2, 2]
        await buf_a.close()
        await buf_b.close()

    run(main())


def test_old_per_server_file_is_merged_in_order(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite"
    old = server_buffer_path(path, "city")

    async def leave_backlog() -> list[int]:
        buf = UplinkBuffer(make_config(old), FakeSink(up=False), boot_id=BOOT, clock=FakeClock())
        await buf.open()
        seqs = submit(buf, "dev1", 3)
        await buf.close()
        return seqs

    run(leave_backlog())
    assert merge_old_file(path, "city") == 3
    assert not old.exists()
    assert list(tmp_path.glob("buffer.city.sqlite.merged-*"))
    assert set(owed(path).values()) == {2}  # city's bit: "default" keeps bit 1

    async def drain() -> FakeSink:
        clock = FakeClock()
        a, b = FakeSink(auto_ack=True), FakeSink(auto_ack=True)
        buf_a, buf_b, _ = pair(path, a, b, clock)
        await buf_a.open()
        await buf_b.open()
        await until(lambda: len(b.log) == 3)
        await buf_a.close()
        await buf_b.close()
        assert a.log == []
        return b

    b = run(drain())
    assert [d.record.body for d in b.log] == [b"x" * 20] * 3
    assert b.sent_seqs() == sorted(b.sent_seqs())
    assert merge_old_file(path, "city") == 0  # nothing left to merge


def record(seq: int, device: str = "dev1", body: bytes = b"y" * 50) -> UplinkRecord:
    return UplinkRecord(seq, device, body, 1_000 + seq, 2_000 + seq, BOOT, True)


def test_store_bounds_and_acks_are_per_server(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite"
    a, b = FrameStore(path), FrameStore(path, server="city")
    a.open()
    b.open()
    records = [record(s) for s in range(1, 5)]
    a.append_many(records)
    b.append_many(records)
    assert len(rows(path)) == 4 and (a.rows, b.rows) == (4, 4)
    dropped = a.enforce_bounds(max_bytes=2 * row_size(records[0]), age=None)
    assert [d.seq for d in dropped] == [1, 2]  # A gives up its oldest two ...
    assert len(rows(path)) == 4  # ... which B still owes
    assert owed(path) == {1: 2, 2: 2, 3: 3, 4: 3}
    b.delete_many([1, 2, 3])
    assert owed(path) == {3: 1, 4: 3}
    assert [r.seq for r in b.read_batch(0, 10)] == [4]
    assert [r.seq for r in a.read_batch(0, 10)] == [3, 4]
    a.delete_many([3, 4])
    b.delete_many([4])
    assert rows(path) == [] and (a.rows, b.rows) == (0, 0)
    a.close()
    b.close()


def test_damaged_shared_row_is_quarantined_for_every_server(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite"
    a, b = FrameStore(path), FrameStore(path, server="city")
    a.open()
    b.open()
    a.append_many([record(1), record(2)])
    b.append_many([record(1), record(2)])
    conn = sqlite3.connect(path)
    conn.execute("UPDATE frames SET crc = crc + 1 WHERE seq = 1")
    conn.commit()
    conn.close()
    batch = a.read_more(0, 10)
    assert [r.seq for r in batch.records] == [2]
    assert [d.seq for d in batch.quarantined] == [1]
    assert [r.seq for r in b.read_batch(0, 10)] == [2]  # gone for B too
    assert a.quarantine_count() == 1
    a.close()
    b.close()
