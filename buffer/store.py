"""The SQLite file behind the uplink buffer: synchronous, used from one writer thread only.

Everything here blocks; ``UplinkBuffer`` calls it through a single-worker
executor that owns the one connection. Every error is raised as ``StoreError``
after an explicit ROLLBACK, because after SQLITE_FULL SQLite may have rolled
back only the statement, or the whole transaction.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import structlog

from buffer.codec import RAW, CodecError, deflate, inflate, make_dictionary
from buffer.records import decode_row, record_checksum
from buffer.schema import (
    MIGRATIONS,
    ForeignSchemaError,
    Migration,
    NewerSchemaError,
    adopt_unversioned,
    check_shape,
    migrate,
)
from buffer.store_types import (
    AgeLimit,
    CommitPlan,
    CommitResult,
    Dropped,
    OpenInfo,
    ReadBatch,
    StoreError,
)
from buffer.types import UplinkRecord

__all__ = ["SHRINK_ABOVE", "AgeLimit", "CommitPlan", "CommitResult", "Dropped", "FrameStore",
           "OpenInfo", "ReadBatch", "StoreError", "default_connect", "row_size"]

log = structlog.get_logger(__name__)

Connect = Callable[[str], sqlite3.Connection]

_ENVIRONMENT_CODES = frozenset({3, 5, 6, 7, 8, 10, 13, 14, 23})
"""PERM, BUSY, LOCKED, NOMEM, READONLY, IOERR, FULL, CANTOPEN, AUTH: failures of the
surroundings, not of the file. Moving the file aside would not help (and a file locked
by another running gateway must never be taken from it): report and retry instead."""
_QUARANTINE_KEEP = 1000
_ROW_OVERHEAD = 32  # the four integers, roughly; only used for the byte bound
_SEQ_META = "seq_high_water"
_WAL_LIMIT = 4 * 1024 * 1024
"""A WAL grown by a burst is cut back to this after a checkpoint (``journal_size_limit``)."""
_PAGE_SIZE = 512
"""Every commit rewrites page 1 (the file grew), an interior page and the last, partly
filled leaf: the smaller the page, the less each fsynced commit writes (512 B pages:
about 10% fewer bytes per frame than 1 KiB at 10 frames/s; a deflated row is ~90 B)."""
_CACHE_KIB = 256
"""SQLite's page cache for this connection (``cache_size``; its default is 2,000 KiB).
Rows are appended at one end and acknowledged from the other, so the pages in use are the
B-tree's interior pages and a few leaves at each end; a burst that fills the default
cache leaves ~2.5 MB resident (512 B pages plus SQLite's per-page headers) for good."""
SHRINK_ABOVE = 8 * 1024 * 1024
"""An emptied store larger than this is vacuumed once, giving the space of a long outage
back. Never while rows remain: freed pages are reused by new rows, so the file stays
bounded by ``max_bytes`` plus B-tree overhead without rewriting pages on the card."""
_READ_COLUMNS = ("seq, device, body, received_ns, monotonic_ns, boot, clock_synced, crc,"
                 " codec")


def default_connect(path: str) -> sqlite3.Connection:
    """Autocommit mode: transactions are begun and ended explicitly by the store."""
    return sqlite3.connect(path, isolation_level=None, timeout=5.0)


def _device_key(device: object) -> str:
    """The device key as the open-time counts spell it (a damaged value stays distinct)."""
    return device if isinstance(device, str) else repr(device)


def row_size(record: UplinkRecord) -> int:
    """Bytes a record counts for against ``max_bytes`` (payload, keys, fixed overhead)."""
    return len(record.body) + len(record.device.encode()) + len(record.boot_id) + _ROW_OVERHEAD


class _FailedCheckError(Exception):
    """``PRAGMA quick_check`` found damage."""




def _text(raw: bytes) -> str:
    """TEXT as str without raising: a flipped bit may leave invalid UTF-8, which the
    checksum (encoding it back fails) then sends to the quarantine."""
    return raw.decode("utf-8", "surrogateescape")


def _int(value: object) -> int:
    """An integer column read defensively (a damaged row may hold anything)."""
    return value if isinstance(value, int) else 0


def _environmental(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and (code & 0xFF) in _ENVIRONMENT_CODES


def _aside_reason(exc: BaseException) -> str:
    if isinstance(exc, NewerSchemaError):
        return "newer"
    if isinstance(exc, ForeignSchemaError):
        return "foreign"
    if isinstance(exc, _FailedCheckError) or StoreError("open", exc).corrupt:
        return "corrupt"
    return "unreadable"




class FrameStore:
    """One SQLite file of unacknowledged frames, in WAL mode with grouped commits."""

    def __init__(self, path: Path, *, connect: Connect = default_connect,
                 migrations: Sequence[Migration] = MIGRATIONS,
                 wall_ns: Callable[[], int] = time.time_ns,
                 shrink_above: int = SHRINK_ABOVE, server: str = "default") -> None:
        """``server``: whose rows this store reads, writes and acknowledges. Several
        stores (one per network server) share one file: each frame is one row whose
        ``owed`` mask holds a bit per server still owed it (schema v3)."""
        self.path = path
        self.server = server
        self._bit = 1
        self._shrink_above = shrink_above
        self._connect = connect
        self._migrations = migrations
        self._wall_ns = wall_ns
        self._conn: sqlite3.Connection | None = None
        self._quarantined: list[Dropped] = []
        self._boot_ids: dict[int, str] = {}
        self._dictionaries: dict[int, bytes] = {}
        self._writing: tuple[int, bytes] | None = None
        self._boot_numbers: dict[str, int] = {}
        self.rows = 0
        self.bytes = 0

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("use", RuntimeError("store is not open"))
        return self._conn

    # --- open, check, migrate -------------------------------------------------------------

    def open(self) -> OpenInfo:
        """Open, check, migrate and verify every row.

        A file that is damaged, too new, of a foreign shape, or fails in any way not
        understood is moved aside (kept, never deleted) with one error line, and a
        fresh file replaces it: never a traceback, never a restart loop. Failures of
        the surroundings (permissions, a full disk, a lock held by another process) and
        a path that is not a regular file raise ``StoreError``: the buffer then runs
        from memory, loudly, and retries.
        """
        self._refuse_non_file()
        try:
            self._open_checked()
            return self._load_info(None)
        except Exception as exc:
            if _environmental(exc):
                self.close()
                raise StoreError("open", exc) from exc
            first = exc
        try:
            moved = self.move_aside(_aside_reason(first))
        except OSError as exc:
            raise StoreError("move_aside", exc) from exc
        log.error("buffer_store_moved_aside", path=str(self.path), moved_to=str(moved),
                  error=f"{type(first).__name__}: {first}")
        try:
            self._open_checked()
            return self._load_info(moved)
        except Exception as again:
            self.close()
            raise StoreError("open", again) from again

    def _refuse_non_file(self) -> None:
        """A directory, a device (``/dev/null``) or a socket at the path is never renamed."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StoreError("open", exc) from exc
        if not stat.S_ISREG(st.st_mode):
            raise StoreError("open", IsADirectoryError(
                f"{self.path} is not a regular file; frames are kept in memory only"))

    def _open_checked(self) -> None:
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = self._connect(str(self.path))
        conn = self._conn
        conn.text_factory = _text
        # Only takes effect when the file is created (``_PAGE_SIZE``): a file made by an
        # older version keeps its page size.
        conn.execute(f"PRAGMA page_size={_PAGE_SIZE}")
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: the WAL is fsynced at every commit, so a commit that returned survives a
        # power cut (under NORMAL only checkpoints sync). Commits are grouped (one per
        # interval), so this costs one fsync per interval, not per frame.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"PRAGMA journal_size_limit={_WAL_LIMIT}")
        conn.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
        result = conn.execute("PRAGMA quick_check").fetchall()
        if [r[0] for r in result] != ["ok"]:
            raise _FailedCheckError(f"quick_check: {result[:3]}")
        if adopt_unversioned(conn):
            log.warning("buffer_store_adopted_unversioned", path=str(self.path))
        migrate(conn, self._migrations)
        check_shape(conn)
        self._bit = self._server_bit()

    def _server_bit(self) -> int:
        """This server's bit in ``owed``: the one recorded for its name, or the lowest free
        one (bits are never reused while the name is listed, so no row changes owner)."""
        conn = self.conn
        row = conn.execute("SELECT bit FROM servers WHERE name = ?", (self.server,)).fetchone()
        if row is not None:
            return int(row[0])
        conn.execute("BEGIN IMMEDIATE")
        try:
            used = {int(r[0]) for r in conn.execute("SELECT bit FROM servers")}
            bit = next(1 << n for n in range(62) if 1 << n not in used)
            conn.execute("INSERT INTO servers (name, bit) VALUES (?, ?)", (self.server, bit))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return bit

    def move_aside(self, reason: str) -> Path:
        """Rename the file (and its WAL/SHM) with a timestamp suffix; a fresh file follows."""
        self.close()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(self._wall_ns() / 1e9))
        target = self.path.with_name(f"{self.path.name}.{reason}-{stamp}")
        n = 1
        while target.exists():
            target = self.path.with_name(f"{self.path.name}.{reason}-{stamp}.{n}")
            n += 1
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                os.replace(src, Path(str(target) + suffix))
        return target

    def _load_info(self, moved: Path | None) -> OpenInfo:
        """Verify every row once (quarantining the bad) and count the backlog by device.

        Paged by seq, so a large backlog never sits in memory; the counts come from
        verified rows only, so a damaged device column cannot hold a device's order.
        """
        conn = self.conn
        max_seq = 0
        counts: dict[str, int] = {}
        after = -(2**63)
        while True:
            batch = self.read_more(after, 2000)
            self._quarantined.extend(batch.quarantined)
            for record in batch.records:
                counts[record.device] = counts.get(record.device, 0) + 1
            if batch.last_seq is None:
                break
            after = batch.last_seq
            max_seq = max(max_seq, after)
        rows, size = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM frames WHERE (owed & ?) != 0",
            (self._bit,)).fetchone()
        hw = conn.execute("SELECT value FROM meta WHERE key = ?", (_SEQ_META,)).fetchone()
        self.rows, self.bytes = int(rows), _int(size)
        top = max(int(max_seq), _int(hw[0]) if hw else 0)
        quarantined = len(self.take_quarantined())
        return OpenInfo(self.rows, self.bytes, top, counts, moved, quarantined)

    def close(self) -> None:
        self._dictionaries.clear()
        self._writing = None
        self._boot_ids.clear()
        self._boot_numbers.clear()
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    # --- transactions ---------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self, operation: str = "write") -> Iterator[None]:
        """BEGIN ... COMMIT, or an explicit ROLLBACK and a ``StoreError``; nests as a no-op."""
        conn = self.conn
        if conn.in_transaction:
            yield
            return
        rows, size = self.rows, self.bytes
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self.rows, self.bytes = rows, size
            self._quarantined.clear()  # rolled back: nothing was moved
            self._boot_numbers.clear()  # a boot or dictionary added in it is gone too
            self._writing = None
            self._dictionaries.clear()
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            raise StoreError(operation, exc) from exc

    def append_many(self, records: Iterable[UplinkRecord]) -> None:
        """Insert (or overwrite with identical content) records by seq."""
        with self.transaction("append"):
            records = list(records)
            writing = self._writing_dictionary(records)
            batch = [(r.seq, r.device, *self._pack(r.body, writing), r.received_ns,
                      r.monotonic_ns, self._boot_number(r.boot_id), int(r.clock_synced),
                      row_size(r), record_checksum(r), self._bit) for r in records]
            seqs = [(b[0],) for b in batch]
            old = self._sizes(seqs)
            # A row another server already wrote (the same frame, the same seq) only
            # gains this server's bit: the frame is stored once.
            self.conn.executemany(
                "INSERT INTO frames (seq, device, body, codec, received_ns,"
                " monotonic_ns, boot, clock_synced, size, crc, owed)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(seq) DO UPDATE SET owed = owed | excluded.owed", batch)
            self.rows += len(batch) - old[0]
            self.bytes += sum(b[8] for b in batch) - old[1]

    def _writing_dictionary(self, records: list[UplinkRecord]) -> tuple[int, bytes] | None:
        """The dictionary new bodies are deflated with: the file's newest, or one made
        from this batch's bodies (in the caller's transaction) when there is none."""
        if self._writing is None:
            row = self.conn.execute(
                "SELECT id, data FROM dictionaries ORDER BY id DESC LIMIT 1").fetchone()
            if row is not None and isinstance(row[1], bytes):
                self._writing = (int(row[0]), row[1])
            elif records:
                data = make_dictionary([r.body for r in records])
                cursor = self.conn.execute("INSERT INTO dictionaries (data) VALUES (?)", (data,))
                self._writing = (int(cursor.lastrowid or 0), data)
        if self._writing is not None:
            self._dictionaries[self._writing[0]] = self._writing[1]
        return self._writing

    @staticmethod
    def _pack(body: bytes, writing: tuple[int, bytes] | None) -> tuple[bytes, int]:
        """``(stored bytes, codec)``: deflated when that is shorter, else as it is."""
        if writing is not None:
            packed = deflate(body, writing[1])
            if len(packed) < len(body):
                return packed, writing[0]
        return body, RAW

    def _unpack(self, data: object, codec: object) -> object:
        """The body a row stores (raises ``CodecError`` when it cannot be restored)."""
        if codec == RAW:
            return data
        if not isinstance(codec, int) or not isinstance(data, bytes):
            raise CodecError(f"codec {codec!r:.20} with a {type(data).__name__} body")
        dictionary = self._dictionaries.get(codec)
        if dictionary is None:
            row = self.conn.execute("SELECT data FROM dictionaries WHERE id = ?",
                                    (codec,)).fetchone()
            if row is None or not isinstance(row[0], bytes):
                raise CodecError(f"unknown dictionary {codec}")
            dictionary = self._dictionaries[codec] = row[0]
        return inflate(data, dictionary)

    def _boot_number(self, boot_id: str) -> int:
        """The row number of a boot id in ``boots`` (added on first use, in the caller's
        transaction; the cache is dropped if that transaction rolls back)."""
        number = self._boot_numbers.get(boot_id)
        if number is None:
            self.conn.execute("INSERT OR IGNORE INTO boots (boot_id) VALUES (?)", (boot_id,))
            found = self.conn.execute("SELECT id FROM boots WHERE boot_id = ?",
                                      (boot_id,)).fetchone()
            number = int(found[0])
            self._boot_numbers[boot_id] = number
        return number

    def _boot_id(self, number: object) -> str | None:
        """The boot id a row refers to; None when ``boots`` has no such row (damage)."""
        if not isinstance(number, int):
            return None
        found = self._boot_ids.get(number)
        if found is None:
            row = self.conn.execute("SELECT boot_id FROM boots WHERE id = ?",
                                    (number,)).fetchone()
            if row is None or not isinstance(row[0], str):
                return None
            found = self._boot_ids[number] = row[0]
        return found

    def _sizes(self, seqs: list[tuple[int]]) -> tuple[int, int]:
        """Row count and bytes of the existing rows among ``seqs`` (usually none)."""
        if not seqs or self.rows == 0:
            return 0, 0
        n = total = 0
        for (seq,) in seqs:
            row = self.conn.execute("SELECT size FROM frames WHERE seq = ? AND (owed & ?) != 0",
                                    (seq, self._bit)).fetchone()
            if row is not None:
                n, total = n + 1, total + _int(row[0])
        return n, total

    def delete_many(self, seqs: Iterable[int]) -> None:
        """This server no longer owes these rows (acknowledged or dropped): clear its bit,
        and delete a row no server owes any more (one DELETE when it was the last)."""
        bit = self._bit
        with self.transaction("delete"):
            for seq in seqs:
                row = self.conn.execute(
                    "DELETE FROM frames WHERE seq = ? AND owed = ? RETURNING size",
                    (seq, bit)).fetchone()
                if row is None:
                    row = self.conn.execute(
                        "UPDATE frames SET owed = owed & ~? WHERE seq = ? AND (owed & ?) != 0"
                        " RETURNING size, owed", (bit, seq, bit)).fetchone()
                    if row is not None and _int(row[1]) == 0:
                        self.conn.execute("DELETE FROM frames WHERE seq = ?", (seq,))
                if row is not None:
                    self.rows -= 1
                    self.bytes -= _int(row[0])

    def _remove_row(self, seq: int) -> None:
        """Take a damaged row out for every server (none can trust it)."""
        row = self.conn.execute("DELETE FROM frames WHERE seq = ? RETURNING size, owed",
                                (seq,)).fetchone()
        if row is not None and _int(row[1]) & self._bit:
            self.rows -= 1
            self.bytes -= _int(row[0])

    def total_rows(self) -> int:
        """Rows of every server sharing the file (only an empty file is vacuumed)."""
        return int(self.conn.execute("SELECT COUNT(*) FROM frames").fetchone()[0])

    def set_seq_high_water(self, seq: int) -> None:
        """Remember the highest seq handed out, so a restart never reuses one."""
        with self.transaction("meta"):
            self.conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key)"
                              " DO UPDATE SET value = max(value, excluded.value)",
                              (_SEQ_META, seq))

    # --- reads ----------------------------------------------------------------------------

    def read_batch(self, after_seq: int, limit: int) -> list[UplinkRecord]:
        """The next verified rows in seq order (damaged ones are quarantined on the way)."""
        batch = self.read_more(after_seq, limit)
        self._quarantined.extend(batch.quarantined)
        return batch.records

    def read_more(self, after_seq: int, limit: int) -> ReadBatch:
        """The next ``limit`` rows in seq order: how the backlog is paged back in.

        Each row's checksum is verified; a row that fails, or whose values are not of
        their column's type, is moved to the quarantine and reported in the result.
        """
        try:
            rows = self.conn.execute(
                f"SELECT {_READ_COLUMNS} FROM frames WHERE seq > ? AND (owed & ?) != 0"
                " ORDER BY seq LIMIT ?", (after_seq, self._bit, limit)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError("read", exc) from exc
        records: list[UplinkRecord] = []
        bad: list[tuple[int, object, str]] = []
        for row in rows:
            found = self._decode(tuple(row))
            if isinstance(found, UplinkRecord):
                records.append(found)
            else:
                bad.append((int(row[0]), row[1], found))
        quarantined = self._quarantine_rows(bad) if bad else []
        last = int(rows[-1][0]) if rows else None
        return ReadBatch(records, quarantined, len(rows), last)

    def _decode(self, row: tuple[object, ...]) -> UplinkRecord | str:
        """A verified record from a ``_READ_COLUMNS`` row, or why it cannot be trusted."""
        seq, device, data, received_ns, monotonic_ns, boot, synced, crc, codec = row
        boot_id = self._boot_id(boot)
        if boot_id is None:
            return f"unknown boot {boot!r:.20}"
        try:
            body = self._unpack(data, codec)
        except CodecError as exc:
            return str(exc)
        return decode_row((seq, device, body, received_ns, monotonic_ns, boot_id, synced, crc))

    # --- quarantine -----------------------------------------------------------------------

    def _quarantine_rows(self, bad: list[tuple[int, object, str]]) -> list[Dropped]:
        """Move damaged rows, exactly as found, to the quarantine table (one error line each)."""
        now = self._wall_ns()
        moved: list[Dropped] = []
        with self.transaction("quarantine"):
            for seq, device, reason in bad:
                self.conn.execute(
                    "INSERT INTO quarantine (seq, device, body, received_ns, monotonic_ns,"
                    " boot, clock_synced, size, crc, codec, reason, quarantined_ns)"
                    " SELECT seq, device, body, received_ns, monotonic_ns, boot,"
                    " clock_synced, size, crc, codec, ?, ? FROM frames WHERE seq = ?",
                    (reason, now, seq))
                self._remove_row(seq)
                log.error("buffer_row_quarantined", path=str(self.path), seq=seq,
                          reason=reason)
                moved.append(Dropped(seq, _device_key(device), "quarantined"))
            self._trim_quarantine()
        return moved

    def quarantine_records(self, items: Iterable[tuple[UplinkRecord, str]]) -> None:
        """Keep records the sink refused (not a valid message) aside, out of ``frames``."""
        now = self._wall_ns()
        with self.transaction("quarantine"):
            for record, reason in items:
                self.delete_many([record.seq])
                self.conn.execute(
                    "INSERT INTO quarantine (seq, device, body, received_ns, monotonic_ns,"
                    " boot, clock_synced, size, crc, reason, quarantined_ns)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (record.seq, record.device, record.body, record.received_ns,
                     record.monotonic_ns, record.boot_id, int(record.clock_synced),
                     row_size(record), record_checksum(record), reason, now))
            self._trim_quarantine()

    def _trim_quarantine(self) -> None:
        """Keep the newest ``_QUARANTINE_KEEP`` rows: enough to inspect, bounded on the card."""
        self.conn.execute("DELETE FROM quarantine WHERE id <= (SELECT MAX(id) FROM quarantine)"
                          " - ?", (_QUARANTINE_KEEP,))

    def take_quarantined(self) -> list[Dropped]:
        """Rows quarantined by bounds or ``oldest`` since the last call, for the buffer."""
        taken, self._quarantined = self._quarantined, []
        return taken

    def quarantine_count(self) -> int:
        try:
            return int(self.conn.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0])
        except sqlite3.Error as exc:
            raise StoreError("count", exc) from exc

    def device_backlog_counts(self) -> dict[str, int]:
        try:
            rows = self.conn.execute("SELECT device, COUNT(*) FROM frames"
                                     " WHERE (owed & ?) != 0 GROUP BY device", (self._bit,))
            return {str(d): int(n) for d, n in rows}
        except sqlite3.Error as exc:
            raise StoreError("count", exc) from exc

    def oldest(self) -> UplinkRecord | None:
        """The oldest verified row (damaged ones at the head are quarantined first)."""
        while True:
            batch = self.read_more(-(2**63), 1)
            self._quarantined.extend(batch.quarantined)
            if batch.records or batch.last_seq is None:
                return batch.records[0] if batch.records else None

    def file_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += os.stat(str(self.path) + suffix).st_size
        return total

    # --- bounds ---------------------------------------------------------------------------

    def enforce_bounds(self, max_bytes: int, age: AgeLimit | None,
                       scan: int = 1000) -> list[Dropped]:
        """Drop the oldest rows: first the expired ones at the head, then down to ``max_bytes``.

        Only the head (``scan`` rows at a time) is examined: age grows with seq, and a
        row whose age is unknown (another boot, unsynchronised clock) is kept.
        """
        dropped: list[Dropped] = []
        with self.transaction("bounds"):
            if age is not None:
                dropped += self._drop_expired(age, scan)
            while self.bytes > max_bytes and self.rows > 0:
                dropped += self._drop_oldest(self.bytes - max_bytes, scan)
        return dropped

    def _drop_expired(self, age: AgeLimit, scan: int) -> list[Dropped]:
        batch = self.read_more(-(2**63), scan)
        self._quarantined.extend(batch.quarantined)
        dropped: list[Dropped] = []
        for probe in batch.records:
            verdict = age.expired(probe)
            if verdict is False:
                break
            if verdict:
                dropped.append(Dropped(probe.seq, probe.device, "max_age"))
        self.delete_many(d.seq for d in dropped)
        return dropped

    def _drop_oldest(self, excess: int, scan: int) -> list[Dropped]:
        rows = self.conn.execute(
            "SELECT seq, device, size FROM frames WHERE (owed & ?) != 0 ORDER BY seq LIMIT ?",
            (self._bit, scan)).fetchall()
        dropped: list[Dropped] = []
        freed = 0
        for seq, device, size in rows:
            if freed >= excess:
                break
            dropped.append(Dropped(int(seq), _device_key(device), "max_bytes"))
            freed += max(_int(size), 1)
        self.delete_many(d.seq for d in dropped)
        return dropped

    # --- the buffer's one transaction per interval ----------------------------------------

    def commit(self, plan: CommitPlan) -> CommitResult:
        """Write new rows, delete acknowledged ones and enforce bounds in one transaction."""
        with self.transaction("commit"):
            if plan.append:
                self.append_many(plan.append)
            if plan.delete:
                self.delete_many(plan.delete)
            if plan.quarantine:
                self.quarantine_records(plan.quarantine)
            dropped = self.enforce_bounds(plan.max_bytes, plan.age) if plan.bounds else []
            if plan.seq_high_water is not None:
                self.set_seq_high_water(plan.seq_high_water)
        try:
            oldest = self.oldest() if self.rows else None
        except StoreError as exc:  # the commit itself stands
            log.warning("buffer_store_oldest_failed", error=str(exc.cause))
            oldest = None
        dropped += self.take_quarantined()
        if (self.rows == 0 and self.file_bytes() > self._shrink_above
                and self.total_rows() == 0):
            try:
                self.shrink()
            except StoreError as exc:  # the commit itself stands; try again next time
                log.warning("buffer_store_shrink_failed", error=str(exc.cause))
        return CommitResult(dropped, self.rows, self.bytes, self.file_bytes(), oldest)

    def shrink(self) -> None:
        """VACUUM (cheap: the table is empty) and truncate the WAL to give space back."""
        try:
            self.conn.execute("VACUUM")
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            raise StoreError("shrink", exc) from exc
        log.info("buffer_store_shrunk", path=str(self.path), bytes=self.file_bytes())
