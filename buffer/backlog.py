"""The buffer's in-memory bookkeeping: which record waits, which is in flight, which is on disk.

No I/O and no sink here, so every rule about order can be reasoned about (and
tested) in one place:

* A record is *waiting* (not sent, or sent and failed), *in flight*, or gone
  (acknowledged or dropped). Waiting records are resident in memory or, when
  persisted and beyond the read-ahead window, on disk only.
* ``priority`` records are those that found their device with nothing waiting
  (a live frame that could not go out at once) or came back after a failure;
  they go first. Every other waiting record is *backlog* and leaves in seq order.
  A priority record is always older than any backlog record of its device, so
  serving priority first never reorders a device.
* The *cursor* pages the disk back in: every disk-only record has a seq above
  it, so a backlog record at or below the cursor cannot overtake one on disk.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass
from typing import Final

import structlog

from buffer.store import AgeLimit, Dropped
from buffer.types import UplinkRecord

log = structlog.get_logger(__name__)

WAITING: Final = 0
IN_FLIGHT: Final = 1


class _NeedRead:
    """Sentinel: the next backlog record in order is on disk."""


NEED_READ: Final = _NeedRead()


@dataclass(slots=True)
class Entry:
    record: UplinkRecord
    persisted: bool = False
    state: int = WAITING
    priority: bool = False
    generation: int = 0
    doomed: str | None = None
    """Set when the store dropped the row while it was in flight: a failure then drops it."""


class Backlog:
    """All records held and not yet acknowledged, and the rows to delete at the next commit."""

    def __init__(self) -> None:
        self.resident: dict[int, Entry] = {}
        self.unpersisted: dict[int, None] = {}  # seq order; what the next commit writes
        self.to_delete: set[int] = set()
        self.disk_only = 0
        self.cursor = 0
        self.dropped: Counter[str] = Counter()
        self._priority: list[int] = []
        self._backlog: list[int] = []
        self._waiting: Counter[str] = Counter()

    # --- queries --------------------------------------------------------------------------

    def has_waiting(self, device: str) -> bool:
        return self._waiting[device] > 0

    @property
    def depth(self) -> int:
        return len(self.resident) + self.disk_only

    @property
    def in_flight(self) -> int:
        return sum(1 for e in self.resident.values() if e.state == IN_FLIGHT)

    @property
    def backlog_resident(self) -> int:
        return len(self._backlog)

    def oldest_resident(self) -> UplinkRecord | None:
        return self.resident[min(self.resident)].record if self.resident else None

    # --- arrivals and sends ---------------------------------------------------------------

    def add(self, record: UplinkRecord, *, in_flight: bool, priority: bool) -> Entry:
        """A new record from ``submit``: already handed to the sink, or waiting."""
        entry = Entry(record, priority=priority)
        self.resident[record.seq] = entry
        self.unpersisted[record.seq] = None
        if in_flight:
            entry.state, entry.generation = IN_FLIGHT, 1
        else:
            self._enqueue(entry)
        return entry

    def _enqueue(self, entry: Entry) -> None:
        entry.state = WAITING
        self._waiting[entry.record.device] += 1
        heapq.heappush(self._priority if entry.priority else self._backlog, entry.record.seq)

    def _valid(self, seq: int, priority: bool) -> Entry | None:
        entry = self.resident.get(seq)
        if entry is not None and entry.state == WAITING and entry.priority == priority:
            return entry
        return None

    def next_priority(self) -> Entry | None:
        while self._priority:
            entry = self._valid(self._priority[0], True)
            if entry is not None:
                return entry
            heapq.heappop(self._priority)
        return None

    def next_backlog(self) -> Entry | _NeedRead | None:
        """The oldest backlog record if it may go now; NEED_READ if the disk comes first."""
        while self._backlog:
            top = self._backlog[0]
            entry = self._valid(top, False)
            if entry is None:
                heapq.heappop(self._backlog)
                continue
            if self.disk_only and top > self.cursor:
                return NEED_READ
            return entry
        return NEED_READ if self.disk_only else None

    def take(self, entry: Entry) -> None:
        """Mark the record returned by ``next_*`` as handed to the sink."""
        heapq.heappop(self._priority if entry.priority else self._backlog)
        entry.state = IN_FLIGHT
        entry.generation += 1
        self._waiting[entry.record.device] -= 1

    def ack(self, seq: int, generation: int) -> bool:
        entry = self.resident.get(seq)
        if entry is None or entry.state != IN_FLIGHT or entry.generation != generation:
            return False
        del self.resident[seq]
        if entry.persisted:
            self.to_delete.add(seq)
        else:
            self.unpersisted.pop(seq, None)
        return True

    def reject(self, seq: int, generation: int) -> Entry | None:
        """The sink can never send this in-flight record: forget it (it goes to the
        quarantine at the next commit); the device's later records go on."""
        entry = self.resident.get(seq)
        if entry is None or entry.state != IN_FLIGHT or entry.generation != generation:
            return None
        del self.resident[seq]
        self.unpersisted.pop(seq, None)
        self.dropped["quarantined"] += 1
        return entry

    def nack(self, seq: int, generation: int) -> bool:
        """Put a failed record back; it is the oldest of its device still owed, so priority."""
        entry = self.resident.get(seq)
        if entry is None or entry.state != IN_FLIGHT or entry.generation != generation:
            return False
        if entry.doomed is not None:
            del self.resident[seq]
            self.dropped[entry.doomed] += 1
            return True
        entry.priority = True
        self._enqueue(entry)
        return True

    # --- drops ----------------------------------------------------------------------------

    def drop(self, entry: Entry, reason: str) -> None:
        """Forget a waiting record (bounds); its row, if any, goes at the next commit."""
        seq = entry.record.seq
        del self.resident[seq]
        self._waiting[entry.record.device] -= 1
        if entry.persisted:
            self.to_delete.add(seq)
        else:
            self.unpersisted.pop(seq, None)
        self.dropped[reason] += 1

    def enforce_memory(self, max_records: int) -> None:
        """Drop the oldest unwritten waiting records beyond ``max_records`` (SQLite failing)."""
        excess = len(self.unpersisted) - max_records
        if excess <= 0:
            return
        victims: list[Entry] = []
        for seq in self.unpersisted:
            if len(victims) >= excess:
                break
            entry = self.resident.get(seq)
            if entry is not None and entry.state == WAITING:
                victims.append(entry)
        for entry in victims:
            self.drop(entry, "memory_full")

    def expire_memory(self, age: AgeLimit) -> None:
        victims: list[Entry] = []
        for seq in self.unpersisted:
            entry = self.resident.get(seq)
            if entry is None or entry.state != WAITING:
                continue
            verdict = age.expired(entry.record)
            if verdict is False:
                break
            if verdict:
                victims.append(entry)
        for entry in victims:
            self.drop(entry, "max_age")

    def apply_store_drops(self, dropped: list[Dropped]) -> None:
        """Account for rows the store removed to keep its bounds, or quarantined."""
        for d in dropped:
            if d.seq in self.to_delete:
                self.to_delete.discard(d.seq)  # acknowledged or already dropped
                continue
            entry = self.resident.get(d.seq)
            if entry is not None and d.reason == "quarantined":
                # The disk copy was damaged; the one in memory is sound: write it again.
                entry.persisted = False
                self.unpersisted[d.seq] = None
                continue
            if entry is None:
                self.disk_only -= 1
                self._waiting[d.device] -= 1
                self.dropped[d.reason] += 1
            elif entry.state == IN_FLIGHT:
                entry.persisted, entry.doomed = False, d.reason
            else:
                entry.persisted = False
                self.drop(entry, d.reason)

    # --- persistence ----------------------------------------------------------------------

    def unwritten(self) -> list[UplinkRecord]:
        return [self.resident[s].record for s in self.unpersisted if s in self.resident]

    def written(self, records: list[UplinkRecord]) -> None:
        """These records are now on disk; those acknowledged meanwhile must be deleted."""
        for record in records:
            self.unpersisted.pop(record.seq, None)
            entry = self.resident.get(record.seq)
            if entry is not None and entry.record is record:
                entry.persisted = True
            else:
                self.to_delete.add(record.seq)

    def evict(self, keep: int) -> int:
        """Leave only ``keep`` persisted backlog records in memory; the rest stay on disk.

        Evicts from the newest end so the cursor stays below every disk-only row.
        """
        keep = max(1, keep)
        valid = sorted({s for s in self._backlog if self._valid(s, False) is not None})
        candidate = valid[keep - 1] if len(valid) > keep else None
        if self.disk_only > 0:
            cut = self.cursor if candidate is None else min(self.cursor, candidate)
        elif candidate is None:
            self._backlog = valid
            return 0
        else:
            cut = candidate
        evicted = [s for s in valid if s > cut and self.resident[s].persisted]
        for seq in evicted:
            del self.resident[seq]
        if evicted:
            self.disk_only += len(evicted)
            self.cursor = cut
        self._backlog = [s for s in valid if s in self.resident]  # sorted: a valid heap
        return len(evicted)

    def load(self, rows: list[UplinkRecord], limit: int, *, scanned: int | None = None,
             last_seq: int | None = None) -> None:
        """Rows read back from disk after the cursor; fewer than ``limit`` means the end.

        ``scanned``/``last_seq`` count rows read including those quarantined on the way
        (already accounted by ``apply_store_drops``), so they neither end the read early
        nor are read again.
        """
        for record in rows:
            if record.seq in self.resident or record.seq in self.to_delete:
                continue
            self.resident[record.seq] = Entry(record, persisted=True)
            heapq.heappush(self._backlog, record.seq)
            self.disk_only -= 1
        if rows:
            self.cursor = max(self.cursor, rows[-1].seq)
        if last_seq is not None:
            self.cursor = max(self.cursor, last_seq)
        if (len(rows) if scanned is None else scanned) < limit:
            if self.disk_only != 0:
                log.warning("buffer_disk_count_mismatch", expected=self.disk_only)
            self.disk_only = 0
            self._recount_waiting()

    def adopt_disk(self, rows: int, device_counts: dict[str, int]) -> None:
        """Rows found in the file at open are backlog, older than anything in memory."""
        self.disk_only += rows
        self._waiting.update(device_counts)
        self.cursor = 0

    def lose_disk(self, reason: str) -> None:
        """The file was replaced: disk-only rows are gone, resident ones must be rewritten."""
        self.dropped[reason] += self.disk_only
        self.disk_only = 0
        self.to_delete.clear()
        for entry in self.resident.values():
            entry.persisted = False
        self.unpersisted = dict.fromkeys(sorted(self.resident))
        self._recount_waiting()

    def _recount_waiting(self) -> None:
        self._waiting = Counter(e.record.device for e in self.resident.values()
                                if e.state == WAITING)
