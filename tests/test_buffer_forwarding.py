"""UplinkBuffer with a real SQLite file and a fake sink: what reaches the sink and the disk."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from buffer.uplink_buffer import UplinkBuffer
from tests.support.buffer import (
    FakeClock,
    FakeSink,
    Switch,
    flaky_store,
    make_buffer,
    make_config,
    rows,
    run,
    submit,
)


async def until(cond: Callable[[], bool], tries: int = 5000) -> None:
    """Let the writer thread run until ``cond`` holds (bounded; never a timing assertion)."""
    for _ in range(tries):
        if cond():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition never held")


def per_device(sink: FakeSink) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for d in sink.log:
        out[d.record.device].append(d.record.seq)
    return out


def test_ack_before_commit_never_touches_disk(tmp_path: Path) -> None:
    async def main() -> None:
        sink = FakeSink()
        buf = make_buffer(tmp_path / "b.sqlite", sink)
        await buf.open()
        seqs = submit(buf, "d1", 5)
        assert sink.sent_seqs() == seqs and not any(d.replayed for d in sink.log)
        sink.ack_all()
        await buf.flush()
        await buf.close()
        assert buf.stats().acked == 5

    run(main())
    assert rows(tmp_path / "b.sqlite") == []


def test_unacked_is_on_disk_after_the_commit_window(tmp_path: Path) -> None:
    async def main() -> None:
        sink = FakeSink()
        buf = make_buffer(tmp_path / "b.sqlite", sink, commit_interval_s=0.05)
        await buf.open()
        seqs = submit(buf, "d1", 3)
        for _ in range(200):  # the writer commits on its own; wait for it, bounded
            if buf.stats().persisted_rows == 3:
                break
            await asyncio.sleep(0.02)
        assert [s for s, _ in rows(tmp_path / "b.sqlite")] == seqs
        sink.ack(seqs[1])
        await buf.flush()
        assert [s for s, _ in rows(tmp_path / "b.sqlite")] == [seqs[0], seqs[2]]
        await buf.abort()

    run(main())


def test_failure_puts_records_back_in_order(tmp_path: Path) -> None:
    async def main() -> None:
        sink = FakeSink()
        buf = make_buffer(tmp_path / "b.sqlite", sink)
        await buf.open()
        seqs = submit(buf, "d1", 3)
        sink.disconnect()
        assert buf.stats().nacked == 3
        later = submit(buf, "d1", 1)  # queues behind the failed ones
        sink.up = True
        buf.sink_ready()
        assert sink.sent_seqs() == seqs + seqs + later
        assert all(d.replayed for d in sink.log[3:])
        sink.ack_all()
        await buf.close()

    run(main())
    assert rows(tmp_path / "b.sqlite") == []


def test_device_with_backlog_queues_while_others_go_live(tmp_path: Path) -> None:
    async def main() -> None:
        sink = FakeSink(up=False)
        buf = make_buffer(tmp_path / "b.sqlite", sink)
        await buf.open()
        held = submit(buf, "d1", 3)
        sink.up = True  # connected, but sink_ready not yet called
        newer = submit(buf, "d1", 1)
        other = submit(buf, "d2", 1)
        assert sink.sent_seqs() == other and not sink.log[0].replayed
        buf.sink_ready()
        assert per_device(sink)["d1"] == held + newer
        await buf.abort()

    run(main())


def test_priority_frames_go_before_backlog_but_never_reorder_a_device(tmp_path: Path) -> None:
    async def main() -> None:
        sink = FakeSink(up=False)
        buf = make_buffer(tmp_path / "b.sqlite", sink)
        await buf.open()
        a = submit(buf, "d1", 2)
        b = submit(buf, "d2", 2)
        sink.up = True
        buf.sink_ready()
        # the first frame of each device (found nothing waiting) goes first, then the rest in seq
        assert sink.sent_seqs() == [a[0], b[0], a[1], b[1]]
        await buf.abort()

    run(main())


def test_restart_drains_rows_in_order(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"

    async def first() -> list[int]:
        buf = make_buffer(path, FakeSink(up=False))
        await buf.open()
        seqs: list[int] = []
        for i in range(60):
            seqs += submit(buf, f"d{i % 3}", 1)
        await buf.close()
        return seqs

    async def second() -> tuple[FakeSink, list[int]]:
        sink = FakeSink(window=5)
        buf = make_buffer(path, sink, read_batch_records=7)
        await buf.open()
        assert buf.stats().depth == 60
        fresh = submit(buf, "d0", 1)  # d0 has a backlog: must wait behind it
        for _ in range(5000):  # the writer thread pages the backlog in: let it run
            buf.sink_ready()
            await asyncio.sleep(0.001)
            if not sink.inflight and len(sink.log) >= 61:
                break
            sink.ack_all()
        await buf.close()
        return sink, fresh

    seqs = run(first())
    assert [s for s, _ in rows(path)] == seqs
    sink, fresh = run(second())
    assert sink.sent_seqs() == [*seqs, *fresh]
    assert all(d.replayed for d in sink.log)
    assert rows(path) == []


def test_close_persists_in_flight_and_waiting(tmp_path: Path) -> None:
    async def main() -> list[int]:
        sink = FakeSink(window=2)
        buf = make_buffer(tmp_path / "b.sqlite", sink)
        await buf.open()
        seqs = submit(buf, "d1", 2) + submit(buf, "d2", 3)
        sink.ack(seqs[0])
        await buf.close()
        return seqs[1:]

    expected = run(main())
    assert [s for s, _ in rows(tmp_path / "b.sqlite")] == expected


def test_backlog_beyond_memory_stays_on_disk(tmp_path: Path) -> None:
    async def main() -> None:
        sink = FakeSink(up=False)
        buf = make_buffer(tmp_path / "b.sqlite", sink, read_batch_records=100)
        await buf.open()
        seqs = []
        for i in range(3000):
            seqs += submit(buf, f"d{i % 7}", 1)
        await buf.flush()
        st = buf.stats()
        assert st.depth == 3000 and st.memory_records <= 100 + 7
        assert st.disk_only_records >= 3000 - 107
        sink.up = True
        for _ in range(10_000):
            buf.sink_ready()
            sink.ack_all()
            if len(sink.log) >= 3000:
                break
            await asyncio.sleep(0.001)
            if len(sink.log) % 500 == 0:
                await buf.flush()
        assert sorted(sink.sent_seqs()) == seqs
        for dev, got in per_device(sink).items():
            assert got == sorted(got), dev
        await buf.close()

    run(main())
    assert rows(tmp_path / "b.sqlite") == []


def test_bytes_bound_drops_oldest_and_counts(tmp_path: Path) -> None:
    async def main() -> list[int]:
        buf = make_buffer(tmp_path / "b.sqlite", FakeSink(up=False), max_bytes=20_000)
        await buf.open()
        seqs = submit(buf, "d1", 100, body=b"b" * 500)
        await buf.flush()
        st = buf.stats()
        assert st.dropped["max_bytes"] == 100 - st.depth
        assert st.depth == st.persisted_rows < 100
        await buf.close()
        return seqs

    seqs = run(main())
    kept = [s for s, _ in rows(tmp_path / "b.sqlite")]
    assert kept == seqs[-len(kept):]


def test_age_bound_drops_old_frames_in_memory_and_on_disk(tmp_path: Path) -> None:
    async def main() -> None:
        clock = FakeClock()
        sink = FakeSink(up=False)
        buf = make_buffer(tmp_path / "b.sqlite", sink, clock, max_age_s=3600)
        await buf.open()
        old_disk = submit(buf, "d1", 3, clock=clock)
        await buf.flush()
        clock.advance(1800)
        submit(buf, "d1", 2, clock=clock)  # not yet written when the bound applies
        clock.advance(1801)
        young = submit(buf, "d1", 1, clock=clock)
        await buf.flush()
        st = buf.stats()
        assert st.dropped == {"max_age": 3}
        assert [s for s, _ in rows(tmp_path / "b.sqlite")] == [old_disk[-1] + 1,
                                                               old_disk[-1] + 2, *young]
        clock.advance(1800)
        await buf.flush()  # the two in-between frames now expire too
        assert buf.stats().dropped == {"max_age": 5}
        sink.up = True
        buf.sink_ready()
        assert sink.sent_seqs() == young
        await buf.abort()

    run(main())


def test_drain_rate_is_limited_while_live_frames_pass(tmp_path: Path) -> None:
    async def main() -> None:
        clock = FakeClock()
        sink = FakeSink(up=False, auto_ack=True)
        buf = make_buffer(tmp_path / "b.sqlite", sink, clock, drain_rate_per_s=10,
                          drain_burst_s=1.0)
        await buf.open()
        submit(buf, "d1", 100, clock=clock)
        sink.up = True
        buf.sink_ready()
        assert len(sink.log) == 11  # the first frame (priority) + one second's burst of 10
        live = submit(buf, "d2", 1, clock=clock)
        assert sink.sent_seqs()[-1] == live[0]
        buf.sink_ready()
        assert len(sink.log) == 12
        clock.advance(0.5)
        buf.sink_ready()
        assert len(sink.log) == 17
        assert sink.sent_seqs()[:11] + sink.sent_seqs()[12:] == list(range(1, 17))
        await buf.abort()

    run(main())


def test_hold_ms_from_monotonic_same_boot_and_wall_across_boots(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"

    async def main() -> None:
        clock = FakeClock()
        sink = FakeSink(up=False)
        buf = make_buffer(path, sink, clock)
        await buf.open()
        submit(buf, "d1", 1, clock=clock)
        clock.mono += 2_000_000_000  # the wall clock jumps, the monotonic one says 2 s
        clock.wall += 3600 * 10**9
        sink.up = True
        buf.sink_ready()
        assert sink.log[-1].hold_ms == 2000 and sink.log[-1].replayed
        await buf.close()
        clock.wall += 5 * 10**9
        other = UplinkBuffer(make_config(path), sink, boot_id="boot-b", clock=clock)
        await other.open()
        def sent_again() -> bool:
            other.sink_ready()
            return len(sink.log) == 2

        await until(sent_again)
        assert sink.log[-1].hold_ms == (3600 + 5) * 1000
        await other.abort()

    run(main())


def test_seq_never_reused_after_restart(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"

    async def once() -> int:
        sink = FakeSink(auto_ack=True)
        buf = make_buffer(path, sink)
        await buf.open()
        seq = submit(buf, "d", 1)[0]
        await buf.close()
        return seq

    a, b = run(once()), run(once())
    assert b > a


def test_corrupt_file_is_moved_aside_and_buffer_works(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    path.write_bytes(b"\x00garbage" * 1000)

    async def main() -> None:
        sink = FakeSink(up=False)
        buf = make_buffer(path, sink)
        await buf.open()
        submit(buf, "d", 2)
        await buf.close()
        assert "moved aside" in (buf.stats().last_storage_error or "")

    run(main())
    assert len(rows(path)) == 2
    assert len(list(tmp_path.glob("b.sqlite.corrupt-*"))) == 1


def test_write_failure_keeps_forwarding_and_resumes(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    switch = Switch()

    async def main() -> None:
        sink = FakeSink()
        buf = UplinkBuffer(make_config(path, memory_max_records=50), sink, boot_id="b",
                           clock=FakeClock(), store_factory=flaky_store(switch))
        await buf.open()
        switch.full = True
        first = submit(buf, "d1", 10)
        await buf.flush()
        st = buf.stats()
        assert not st.storage_ok and "full" in (st.last_storage_error or "")
        assert rows(path) == []
        live = submit(buf, "d2", 1)
        assert sink.sent_seqs() == first + live  # live forwarding went on
        sink.disconnect()
        more = submit(buf, "d3", 60)  # memory queue holds 50 unwritten records at most
        await buf.flush()
        assert buf.stats().dropped["memory_full"] == 21
        switch.full = False
        await buf.flush()
        st = buf.stats()
        assert st.storage_ok and st.persisted_rows == 50
        on_disk = [s for s, _ in rows(path)]
        assert on_disk == sorted(first + live + more)[21:]  # the oldest 21 went

    run(main())


def test_sink_that_raises_is_treated_as_failure(tmp_path: Path) -> None:
    class Broken(FakeSink):
        def send(self, delivery, on_result):  # type: ignore[no-untyped-def]
            raise RuntimeError("boom")

    async def main() -> None:
        buf = make_buffer(tmp_path / "b.sqlite", Broken())
        await buf.open()
        submit(buf, "d1", 1)
        submit(buf, "d2", 1)
        submit(buf, "d1", 1)  # behind the failed one: waits for the retry
        assert buf.stats().nacked == 2 and buf.stats().depth == 3
        await buf.close()

    run(main())
    assert len(rows(tmp_path / "b.sqlite")) == 3


def test_unopenable_store_runs_from_memory(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()

    async def main() -> None:
        sink = FakeSink()
        buf = make_buffer(tmp_path / "dir", sink)
        await buf.open()
        submit(buf, "d1", 3)
        await buf.flush()
        st = buf.stats()
        assert not st.storage_ok and st.depth == 3 and len(sink.log) == 3
        await buf.close()

    run(main())


def test_corruption_found_in_use_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    switch = Switch()

    async def main() -> None:
        sink = FakeSink(up=False)
        buf = UplinkBuffer(make_config(path, read_batch_records=2), sink, boot_id="b",
                           clock=FakeClock(), store_factory=flaky_store(switch))
        await buf.open()
        submit(buf, "d1", 10)
        await buf.flush()
        assert buf.stats().disk_only_records == 7  # 1 (priority) and 2, 3 (read-ahead) stay
        switch.corrupt = True
        fresh = submit(buf, "d2", 1)
        await buf.flush()
        switch.corrupt = False
        await buf.flush()
        st = buf.stats()
        assert st.dropped == {"corrupt": 7}
        assert [s for s, _ in rows(path)] == [1, 2, 3, *fresh]  # resident ones rewritten
        await buf.close()

    run(main())
    assert len(list(tmp_path.glob("b.sqlite.corrupt-*"))) == 1


def test_frames_held_through_an_outage_are_paced_even_first_of_their_device(
        tmp_path: Path) -> None:
    """After an outage, each device's first frame is "priority" (it found its device
    idle) but stale: it must not bypass the drain rate, or a reconnect with 1,000
    devices would dump 1,000 frames in front of a fresh uplink."""
    async def main() -> None:
        clock = FakeClock()
        sink = FakeSink(up=False, auto_ack=True)
        buf = make_buffer(tmp_path / "b.sqlite", sink, clock, drain_rate_per_s=100,
                          drain_burst_s=0.1)
        await buf.open()
        held = [submit(buf, f"d{i}", 1, clock=clock)[0] for i in range(50)]
        clock.advance(30.0)  # the outage
        sink.up = True
        buf.sink_ready()
        assert sink.sent_seqs() == held[:10]  # 0.1 s worth of 100/s, no more
        live = submit(buf, "fresh", 1, clock=clock)
        assert sink.sent_seqs()[-1] == live[0]  # a live frame is not paced
        clock.advance(0.1)
        buf.sink_ready()
        assert sink.sent_seqs()[11:] == held[10:20]
        await buf.abort()

    run(main())


def test_a_burst_while_connected_drains_as_fast_as_the_window_allows(tmp_path: Path) -> None:
    """A burst that outran the window is not an outage: it must not wait for the drain
    rate (20,000 frames at 200/s took 100 s where the link needed 2)."""
    async def main() -> None:
        clock = FakeClock()
        sink = FakeSink(window=10)
        buf = make_buffer(tmp_path / "b.sqlite", sink, clock, drain_rate_per_s=1,
                          drain_burst_s=1.0)
        await buf.open()
        seqs = [s for i in range(20) for s in submit(buf, f"d{i % 4}", 5, clock=clock)]
        assert len(sink.log) == 10 and len(seqs) == 100
        for _ in range(20):  # the clock never moves: no token is ever earned
            sink.ack_all()
            await asyncio.sleep(0)
        assert sorted(sink.sent_seqs()) == seqs
        for device in ("d0", "d1", "d2", "d3"):  # and each device kept its order
            mine = [d.record.seq for d in sink.log if d.record.device == device]
            assert mine == sorted(mine)
        await buf.abort()

    run(main())


def test_only_frames_from_the_outage_are_paced_then_full_speed_again(tmp_path: Path) -> None:
    async def main() -> None:
        clock = FakeClock()
        sink = FakeSink(window=5)
        buf = make_buffer(tmp_path / "b.sqlite", sink, clock, drain_rate_per_s=10,
                          drain_burst_s=0.2)
        await buf.open()
        submit(buf, "d1", 2, clock=clock)
        sink.disconnect()  # both in flight fail: an outage
        held = submit(buf, "d2", 20, clock=clock)
        clock.advance(30.0)
        sink.up = True
        buf.sink_ready()
        await asyncio.sleep(0)
        sink.ack_all()
        await asyncio.sleep(0)
        assert len(sink.log) == 4  # d1's two again, paced: 0.2 s of 10/s
        assert not set(held) & set(sink.sent_seqs())
        for _ in range(20):
            clock.advance(0.2)
            buf.sink_ready()
            sink.ack_all()
            await asyncio.sleep(0)
        assert set(held) <= set(sink.sent_seqs())
        before = len(sink.log)
        burst = [s for i in range(10) for s in submit(buf, f"e{i}", 3, clock=clock)]
        for _ in range(10):  # connected again: the new burst needs no tokens
            sink.ack_all()
            await asyncio.sleep(0)
        assert sink.sent_seqs()[before:] != [] and set(burst) <= set(sink.sent_seqs())
        await buf.abort()

    run(main())


class ReadyAfterResultsSink(FakeSink):
    """A sink that promises ``sink_ready`` after its results (as the MQTT sink does)."""

    ready_after_results = True


def test_a_sink_that_reports_ready_after_results_drives_the_pump(tmp_path: Path) -> None:
    async def main() -> None:
        sink = ReadyAfterResultsSink(window=1)
        buf = make_buffer(tmp_path / "b.sqlite", sink)
        await buf.open()
        submit(buf, "d1", 1)
        submit(buf, "d2", 1)  # waits: the window of one is full
        assert sink.sent_seqs() == [1]
        sink.ack(1)
        await asyncio.sleep(0.01)  # loop turns pass: the ack alone schedules no pump
        assert sink.sent_seqs() == [1]
        buf.sink_ready()  # what the sink does after its batch of results
        assert sink.sent_seqs() == [1, 2]
        sink.ack_all()
        await buf.close()

    run(main())


def test_without_that_promise_an_ack_pumps_on_its_own(tmp_path: Path) -> None:
    async def main() -> None:
        sink = FakeSink(window=1)
        buf = make_buffer(tmp_path / "b.sqlite", sink)
        await buf.open()
        submit(buf, "d1", 1)
        submit(buf, "d2", 1)
        sink.ack(1)
        await until(lambda: sink.sent_seqs() == [1, 2])
        sink.ack_all()
        await buf.close()

    run(main())
