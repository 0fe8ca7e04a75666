"""Store-and-forward of uplinks: live frames go straight out, everything else waits in SQLite.

Runs on the event loop. ``submit`` never blocks: a frame goes to the sink at once
when it can send and its device has nothing waiting, and is kept in memory
until acknowledged. Once per ``commit_interval_s`` a single transaction, on the
one writer thread that owns the SQLite connection, writes every record still
unacknowledged and deletes the rows acknowledged since; a frame acknowledged
within the interval never touches the flash. Storage errors never reach the
caller: live forwarding goes on, unwritten records wait in a bounded memory
queue, and persisting is retried at the next interval.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import structlog

from buffer.backlog import NEED_READ, Backlog, Entry
from buffer.clock import Clock, SyncState, SystemClock, frame_timing
from buffer.config import BufferConfig
from buffer.ratelimit import EveryInterval, TokenBucket
from buffer.stats import BufferStats
from buffer.store import AgeLimit, CommitPlan, CommitResult, FrameStore, OpenInfo, StoreError
from buffer.types import Delivery, Timing, UndeliverableError, UplinkRecord, UplinkSink
from buffer.wakeup import Wakeup

__all__ = ["BufferConfig", "BufferStats", "SeqCounter", "UplinkBuffer"]

log = structlog.get_logger(__name__)

T = TypeVar("T")

_SEQ_RESERVE = 1_000_000  # seqs handed out between two writes of the high-water mark
_BOUNDS_EVERY_NS = 60 * 1_000_000_000


class SeqCounter:
    """The next seq to hand out, shared by the buffers of servers sharing one file.

    A frame routed to several servers keeps one seq (its row's key) in all of them,
    and a frame routed to one server only must never take a seq another server's
    frame already has: so the counter is one for the whole file, not per buffer.
    """

    def __init__(self) -> None:
        self.next = 1


class UplinkBuffer:
    """Keeps every uplink until the sink confirms it, in per-device order."""

    def __init__(self, config: BufferConfig, sink: UplinkSink, *, boot_id: str,
                 clock: Clock | None = None,
                 store_factory: Callable[[Path], FrameStore] = FrameStore,
                 clock_synced: Callable[[], bool] | None = None,
                 seqs: SeqCounter | None = None) -> None:
        """``clock_synced`` says whether the wall clock is synchronised now (the daemon
        passes ``gateway.clock.clock_synchronised``); without it, the flag of the latest
        submitted frame is used. It decides whether unsynchronised receive times can be
        corrected when a held frame is published. ``seqs`` is shared by the buffers of
        servers whose stores share one file."""
        self._config = config
        self._sink = sink
        self._boot_id = boot_id
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._store = store_factory(config.path)
        self._backlog = Backlog()
        self._bucket = TokenBucket(config.drain_rate_per_s, self._clock.monotonic_ns,
                                   config.drain_burst_s)
        self._error_log = EveryInterval(60.0, self._clock.monotonic_ns)
        self._drop_log = EveryInterval(60.0, self._clock.monotonic_ns)
        self._drops_logged = 0
        self._sync = SyncState(clock_synced, self._clock.monotonic_ns)
        self._seqs = seqs if seqs is not None else SeqCounter()
        self._first_seq: int | None = None
        self._hw_written = 0
        self._store_open = False
        self._counts = {"submitted": 0, "sent": 0, "acked": 0, "nacked": 0}
        self._storage_ok = True
        self._last_error: str | None = None
        self._disk = CommitResult()
        self._last_bounds_ns = self._clock.monotonic_ns()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._worker: asyncio.Task[None] | None = None
        self._io_lock = asyncio.Lock()
        self._wake = Wakeup()
        self._read_wanted = False
        self._read_failed = False
        self._commit_early = False
        self._rejected: list[tuple[UplinkRecord, str]] = []
        self._closing = False
        self._closed = False
        self._pumping = False
        self._pump_again = False
        self._pump_scheduled = False
        self._ready_follows_results = bool(getattr(sink, "ready_after_results", False))
        """The sink calls ``sink_ready`` after every batch of results it reports (see
        ``UplinkSink``): an acknowledgement then needs no pump of its own."""
        self._paused = False
        self._drain_timer: asyncio.TimerHandle | None = None
        self._outstanding = 0
        """Sends whose result has not come back yet (each send gets exactly one)."""
        self._outage = False
        self._paced_upto = 0
        """Records with a seq up to this one were left behind by an outage (or a previous
        run) and replay at ``drain_rate_per_s``; later ones wait only for the window."""
        self._retry_timer: asyncio.TimerHandle | None = None

    @property
    def _next_seq(self) -> int:
        return self._seqs.next

    @_next_seq.setter
    def _next_seq(self, value: int) -> None:
        self._seqs.next = value

    # --- life cycle -----------------------------------------------------------------------

    async def open(self) -> None:
        """Open (check, migrate, or move aside) the store and adopt its rows as backlog."""
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="uplink-store")
        async with self._io_lock:
            if await self._open_store():
                await self._commit()  # reserves seqs: a crash before the first commit reuses none
            else:
                self._next_seq = max(self._next_seq, self._clock.wall_ns() // 1000)
        self._worker = asyncio.create_task(self._run_store(), name="uplink-store")
        self._pump()

    async def close(self) -> None:
        """Write every unacknowledged record (in flight ones too), then close the file."""
        if self._closed or self._loop is None:
            return
        await self._stop_worker()
        async with self._io_lock:
            await self._commit()
            if self._backlog.unpersisted:
                log.error("buffer_close_unpersisted", lost=len(self._backlog.unpersisted),
                          error=self._last_error)
            with contextlib.suppress(StoreError):
                await self._call(self._store.close)
        self._shutdown_executor()

    async def abort(self) -> None:
        """Stop without writing anything more: exactly what a crash would leave on disk."""
        if self._closed or self._loop is None:
            return
        await self._stop_worker()
        async with self._io_lock:
            with contextlib.suppress(StoreError):
                await self._call(self._store.close)
        self._shutdown_executor()

    async def flush(self) -> None:
        """Run one commit now instead of at the next interval."""
        if self._loop is None or self._closed:
            return
        async with self._io_lock:
            await self._commit()

    async def settle(self) -> None:
        """Wait until a backlog read asked for by the pump has been done (tests, benchmarks)."""
        while self._read_wanted or self._io_lock.locked():
            await asyncio.sleep(0.001)

    async def _stop_worker(self) -> None:
        self._closing = True
        for timer in (self._drain_timer, self._retry_timer):
            if timer is not None:
                timer.cancel()
        self._wake.set()
        if self._worker is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._worker

    def _shutdown_executor(self) -> None:
        self._closed = True
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    # --- the frame path -------------------------------------------------------------------

    def submit(self, device: str, body: bytes, *, received_ns: int, monotonic_ns: int,
               clock_synced: bool, seq: int | None = None) -> int:
        """Take a received frame; returns its seq. Never blocks, never raises.

        ``seq``: the seq another server's buffer (sharing the file and the counter)
        already gave this same frame, so both owe the one row."""
        if seq is None:
            seq = self._next_seq
            self._next_seq += 1
        if self._first_seq is None:
            self._first_seq = seq
        self._counts["submitted"] += 1
        self._sync.observe(bool(clock_synced))
        try:
            record = UplinkRecord(seq, str(device), bytes(body), int(received_ns),
                                  int(monotonic_ns), self._boot_id, bool(clock_synced))
        except (TypeError, ValueError) as exc:
            self._backlog.dropped["invalid"] += 1
            log.warning("buffer_invalid_frame", error=str(exc))
            return seq
        if self._closed or self._closing:
            self._backlog.dropped["closed"] += 1
            return seq
        live = not self._backlog.has_waiting(record.device)
        can_send = self._can_send()
        if live and can_send:
            self._send(self._backlog.add(record, in_flight=True, priority=False), replayed=False)
        else:
            if self._outage or (not can_send and not self._outstanding):
                # Refused with nothing in flight: the link is down, not the window full.
                self._outage = True
                self._paced_upto = seq
            self._backlog.add(record, in_flight=False, priority=live)
        unwritten = len(self._backlog.unpersisted)
        if unwritten > self._config.memory_max_records:
            self._backlog.enforce_memory(self._config.memory_max_records)
        elif (unwritten >= self._config.commit_early_records and self._storage_ok
              and not self._commit_early):
            self._commit_early = True  # a burst: write it now, keep memory small
            self._wake.set()
        return seq

    def sink_ready(self) -> None:
        """The sink connected or its in-flight window has room: send what waits."""
        self._paused = False
        self._pump()

    def _can_send(self) -> bool:
        try:
            return bool(self._sink.can_send())
        except Exception as exc:
            log.warning("buffer_sink_can_send_failed", error=str(exc))
            return False

    def _timing(self, record: UplinkRecord) -> Timing:
        return frame_timing(record, boot_id=self._boot_id,
                            now_mono_ns=self._clock.monotonic_ns(),
                            now_wall_ns=self._clock.wall_ns(), synced_now=self._sync.synced())

    def _send(self, entry: Entry, *, replayed: bool) -> None:
        record, generation = entry.record, entry.generation
        timing = self._timing(record)
        delivery = Delivery(record, replayed, timing.hold_ms or 0, timing)

        def on_result(ok: bool) -> None:
            self._on_result(record.seq, generation, ok)

        self._counts["sent"] += 1
        self._outstanding += 1
        try:
            self._sink.send(delivery, on_result)
        except UndeliverableError as exc:
            if self._backlog.reject(record.seq, generation) is not None:
                self._rejected.append((record, str(exc)))
                log.error("buffer_row_quarantined", path=str(self._config.path), seq=record.seq,
                          device=record.device, reason=str(exc))
            self._pump_soon()
        except Exception as exc:
            log.warning("buffer_sink_send_failed", seq=record.seq, error=str(exc))
            self._on_result(record.seq, generation, False)

    def _on_result(self, seq: int, generation: int, ok: bool) -> None:
        self._outstanding -= 1
        self._outage = not ok
        if ok:
            if self._backlog.ack(seq, generation):
                self._counts["acked"] += 1
                if not self._ready_follows_results:
                    self._pump_soon()
        elif self._backlog.nack(seq, generation):
            self._counts["nacked"] += 1
            self._paused = True
            self._schedule_retry()

    # --- pumping the backlog --------------------------------------------------------------

    def _pump(self) -> None:
        """Send waiting records while the sink can take them (re-entrant calls coalesce)."""
        if self._pumping:
            self._pump_again = True
            return
        if self._loop is None or self._closed:
            return
        self._pumping = True
        try:
            self._pump_again = True
            while self._pump_again:
                self._pump_again = False
                self._pump_once()
        finally:
            self._pumping = False

    def _pump_soon(self) -> None:
        """Pump once after the acknowledgements read in this loop turn, not once per
        PUBACK: a socket read delivers dozens at a time, and one pump refilling the
        whole window is much cheaper than dozens refilling one slot each."""
        if not self._pump_scheduled and self._loop is not None and not self._closed:
            self._pump_scheduled = True
            self._loop.call_soon(self._pump_due)

    def _pump_due(self) -> None:
        self._pump_scheduled = False
        self._pump()

    def _pump_once(self) -> None:
        backlog = self._backlog
        while not self._paused and self._can_send():
            entry = backlog.next_priority()
            if entry is None:
                found = backlog.next_backlog()
                if found is NEED_READ:
                    self._request_read()
                    return
                if not isinstance(found, Entry):
                    return
                entry = found
            if self._paced(entry) and not self._bucket.take():
                self._schedule_drain(self._bucket.wait_s())
                return
            backlog.take(entry)
            self._send(entry, replayed=True)
        if backlog.disk_only and backlog.backlog_resident < self._config.read_batch_records // 2:
            self._request_read()

    def _paced(self, entry: Entry) -> bool:
        """Only what an outage left behind is paced: while connected, a backlog that a
        burst built up (the window was full) drains as fast as the link takes it."""
        return entry.record.seq <= self._paced_upto and not (
            entry.priority and self._fresh(entry.record))

    def _fresh(self, record: UplinkRecord) -> bool:
        """Received in this boot less than ``fresh_s`` ago (held only by a full window)."""
        return (record.boot_id == self._boot_id and self._clock.monotonic_ns()
                - record.monotonic_ns < self._config.fresh_s * 1e9)

    def _schedule_drain(self, delay_s: float) -> None:
        if self._drain_timer is None and self._loop is not None and not self._closing:
            self._drain_timer = self._loop.call_later(max(delay_s, 0.001), self._drain_due)

    def _drain_due(self) -> None:
        self._drain_timer = None
        self._pump()

    def _schedule_retry(self) -> None:
        """After a failure, pause until the sink says it is ready (or a second has passed)
        rather than spin on a sink that keeps failing."""
        if self._retry_timer is None and self._loop is not None and not self._closing:
            self._retry_timer = self._loop.call_later(self._config.retry_after_s,
                                                     self._retry_due)

    def _retry_due(self) -> None:
        self._retry_timer = None
        self._paused = False
        self._pump()

    def _request_read(self) -> None:
        if not self._read_failed and not self._read_wanted and self._store_open:
            self._read_wanted = True
            self._wake.set()

    # --- the writer thread ----------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        assert self._loop is not None and self._executor is not None
        return await self._loop.run_in_executor(self._executor, fn, *args)

    async def _run_store(self) -> None:
        """Commit every interval; read the backlog back when the pump asks."""
        assert self._loop is not None
        loop = self._loop
        next_commit = loop.time() + self._config.commit_interval_s
        while not self._closing:
            timeout = next_commit - loop.time()
            timed_out = False
            if not (self._read_wanted or self._commit_early) and timeout > 0:
                # the loop may run a timer up to its clock resolution early: a wait that
                # timed out means the commit is due (else a second, tiny wait followed)
                timed_out = not await self._wake.wait(timeout)
            self._wake.clear()
            if self._closing:
                break
            try:
                async with self._io_lock:
                    if self._read_wanted:
                        await self._read_more()
                    if self._commit_early or timed_out or loop.time() >= next_commit:
                        self._read_failed = False
                        await self._commit()
                        self._commit_early = False
                        next_commit = loop.time() + self._config.commit_interval_s
            except Exception:  # a bug here must not stop persisting for good
                log.exception("buffer_store_worker_error")
                next_commit = loop.time() + self._config.commit_interval_s

    async def _read_more(self) -> None:
        self._read_wanted = False
        if not self._store_open or not self._backlog.disk_only:
            return
        limit = self._config.read_batch_records
        try:
            batch = await self._call(self._store.read_more, self._backlog.cursor, limit)
        except StoreError as exc:
            self._read_failed = True
            await self._storage_failed(exc)
            return
        self._backlog.apply_store_drops(batch.quarantined)
        self._backlog.load(batch.records, limit, scanned=batch.scanned, last_seq=batch.last_seq)
        self._pump()

    async def _open_store(self) -> bool:
        try:
            info = await self._call(self._store.open)
        except StoreError as exc:
            await self._storage_failed(exc)
            return False
        if self._first_seq is not None and info.max_seq >= self._first_seq:
            # Opened late, after seqs were handed out: never let old rows collide with them.
            log.error("buffer_store_seq_conflict", max_seq=info.max_seq, first=self._first_seq)
            try:
                info = await self._call(self._reopen_fresh, "conflict")
            except StoreError as exc:
                await self._storage_failed(exc)
                return False
        self._adopt(info)
        return True

    def _reopen_fresh(self, reason: str) -> OpenInfo:
        try:
            self._store.move_aside(reason)
        except OSError as exc:
            raise StoreError("move_aside", exc) from exc
        return self._store.open()

    def _adopt(self, info: OpenInfo) -> None:
        self._store_open = True
        if info.moved_aside is not None:
            self._last_error = f"store moved aside to {info.moved_aside.name}"
        self._next_seq = max(self._next_seq, info.max_seq + 1)
        self._paced_upto = max(self._paced_upto, info.max_seq)  # a previous run's backlog
        self._hw_written = info.max_seq
        self._backlog.adopt_disk(info.rows, info.device_counts)
        if info.quarantined:
            self._backlog.dropped["quarantined"] += info.quarantined
        self._disk = CommitResult(rows=info.rows, bytes=info.bytes)
        if info.rows:
            log.info("buffer_backlog_found", rows=info.rows, bytes=info.bytes)

    def _age_limit(self) -> AgeLimit:
        max_age_ns = int(self._config.max_age_s * 1e9)
        return AgeLimit(self._boot_id, self._clock.monotonic_ns() - max_age_ns,
                        self._clock.wall_ns() - max_age_ns)

    async def _commit(self) -> None:
        """One transaction: new unacknowledged rows in, acknowledged rows out, bounds kept."""
        backlog = self._backlog
        covered = self._counts["submitted"]
        age = self._age_limit()
        backlog.expire_memory(age)
        backlog.enforce_memory(self._config.memory_max_records)
        self._report_drops()
        if not self._store_open and not await self._open_store():
            return
        now = self._clock.monotonic_ns()
        bounds_due = now - self._last_bounds_ns >= _BOUNDS_EVERY_NS
        append = backlog.unwritten()
        delete = sorted(backlog.to_delete)
        high_water = None
        if self._next_seq > self._hw_written - _SEQ_RESERVE // 2:
            high_water = self._next_seq + _SEQ_RESERVE
        rejected, self._rejected = self._rejected, []
        if not (append or delete or bounds_due or high_water or rejected):
            self._log_covered(covered, 0, 0)
            return
        plan = CommitPlan(append, delete, self._config.max_bytes, age, high_water,
                          quarantine=rejected)
        backlog.to_delete.difference_update(delete)
        try:
            result = await self._call(self._store.commit, plan)
        except StoreError as exc:
            backlog.to_delete.update(delete)
            self._rejected = rejected + self._rejected
            await self._storage_failed(exc)
            return
        self._last_bounds_ns = now
        self._storage_ok = True
        if high_water is not None:
            self._hw_written = high_water
        backlog.written(append)
        backlog.apply_store_drops(result.dropped)
        backlog.evict(self._config.read_batch_records)
        self._disk = result
        self._report_drops()
        self._log_covered(covered, len(append), len(delete))
        self._pump()

    @staticmethod
    def _log_covered(covered: int, appended: int, deleted: int) -> None:
        """Debug line after each commit: the first ``covered`` frames submitted by this
        process are now acknowledged or on disk. The crash test reads it to know exactly
        which frames a SIGKILL must not lose."""
        log.debug("buffer_committed", covered=covered, appended=appended, deleted=deleted)

    async def _storage_failed(self, exc: StoreError) -> None:
        """Report (rate-limited), and replace a file found corrupt while in use."""
        self._storage_ok = False
        self._last_error = str(exc)
        if self._error_log.ready():
            log.error("buffer_storage_error", path=str(self._config.path),
                      operation=exc.operation, error=str(exc.cause),
                      memory_records=len(self._backlog.unpersisted),
                      suppressed=self._error_log.suppressed)
            self._error_log.suppressed = 0
        if exc.corrupt and self._store_open:
            self._store_open = False
            self._backlog.lose_disk("corrupt")
            try:
                info = await self._call(self._reopen_fresh, "corrupt")
            except StoreError as again:
                self._last_error = str(again)
                return
            self._adopt(info)

    # --- reporting ------------------------------------------------------------------------

    def _age_s(self, record: UplinkRecord | None) -> float | None:
        hold_ms = None if record is None else self._timing(record).hold_ms
        return None if hold_ms is None else hold_ms / 1000.0

    def _report_drops(self) -> None:
        """One warning per minute at most, with the counts by reason since the start."""
        total = sum(self._backlog.dropped.values())
        if total > self._drops_logged and self._drop_log.ready():
            log.warning("buffer_dropped", new=total - self._drops_logged, total=total,
                        by_reason=dict(self._backlog.dropped))
            self._drops_logged = total

    def stats(self) -> BufferStats:
        backlog = self._backlog
        oldest = backlog.oldest_resident()
        if backlog.disk_only and self._disk.oldest is not None and (
                oldest is None or self._disk.oldest.seq < oldest.seq):
            oldest = self._disk.oldest
        return BufferStats(
            depth=backlog.depth,
            memory_records=len(backlog.resident),
            disk_only_records=backlog.disk_only,
            in_flight=backlog.in_flight,
            oldest_age_s=self._age_s(oldest),
            persisted_rows=self._disk.rows,
            bytes_on_disk=self._disk.file_bytes,
            submitted=self._counts["submitted"],
            sent=self._counts["sent"],
            acked=self._counts["acked"],
            nacked=self._counts["nacked"],
            dropped=dict(backlog.dropped),
            storage_ok=self._storage_ok,
            last_storage_error=self._last_error,
        )
