"""The key store on disk: one SQLite file (WAL, ``synchronous=FULL``), secrets sealed.

Keys are written rarely (an import, a sync message) and the frame counters in grouped
flushes, so every commit can afford a full sync: what was acknowledged survives a power
cut. Public columns (DevEUI, DevAddr, version, last FCnt) stay in clear so the store can
be listed and indexed; the key material of each row is one AES-GCM value bound to the
row's identity (see ``sealing``).

Every session row has a random ``key_id`` that changes whenever its keys change. Counter
writes name it, so a flush can never move a counter onto a newer session that another
process (the CLI, a sync message) wrote meanwhile.

Every stored field is authenticated or harmless. Identity columns (DevEUI, DevAddr, MAC
version, key id, JoinEUI) are the sealed secrets' associated data; ``last_fcnt`` carries
its own tag (``fcnt_tag``); the meta values that steer behaviour (the key check, the
clean-shutdown mark, the key-sync sequence and digest) are sealed. ``updated_ns`` is
written for people reading the file and never read back. A row that fails is skipped
with one log line; a damaged sync state refuses key sync rather than allowing a replay.

Thread use: one connection guarded by a lock; callers run these methods off the event
loop (they block on the disk).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import structlog

from packet_forwarder.keystore.errors import MasterKeyError, RecordError, StoreDamagedError
from packet_forwarder.keystore.records import (
    DeviceSession,
    RootKey,
    root_from_secrets,
    session_from_secrets,
)
from packet_forwarder.keystore.schema import migrate
from packet_forwarder.keystore.sealing import (
    Sealer,
    SealError,
    associated_data,
    create_master_key,
    read_master_key,
)

log = structlog.get_logger(__name__)

KEY_ID_LEN: Final = 8
_KEY_CHECK: Final = b"lora-gateway key store"


@dataclass(frozen=True, slots=True)
class StoredSession:
    """A session as stored: ``key_id`` names this exact set of keys."""

    session: DeviceSession
    key_id: bytes


@dataclass(frozen=True, slots=True)
class Loaded:
    """Everything the store holds; ``rejected`` lists rows that failed authentication
    (``"session:<dev_eui>"`` / ``"root:<dev_eui>"``): skipped, never trusted."""

    sessions: list[StoredSession]
    roots: list[RootKey]
    rejected: list[str]


@dataclass(slots=True)
class Applied:
    """What one write transaction changed, for mirroring into the in-memory index."""

    stored: list[StoredSession] = field(default_factory=list)
    roots: list[RootKey] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def changes(self) -> int:
        return len(self.stored) + len(self.roots) + len(self.removed)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=5.0, check_same_thread=False)
    # a damaged TEXT cell is not UTF-8: read it as text that fails authentication
    # (the row is rejected) instead of raising UnicodeDecodeError from a query
    conn.text_factory = _lenient_text
    return conn


def _lenient_text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


class KeyStore:
    """Device sessions and root keys in an encrypted SQLite file.

    ``track_shutdown`` (the daemon only): mark the store "in use" at open and "closed
    cleanly" at ``close``, so the next open can tell a power cut happened and that the
    stored counters may be one flush window old (``unclean_shutdown``).
    """

    def __init__(
        self,
        path: Path,
        key_file: Path,
        *,
        track_shutdown: bool = False,
        now_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.path = path
        self.key_file = key_file
        self._now_ns = now_ns
        self._lock = threading.Lock()
        self._track = track_shutdown
        self.unclean_shutdown = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = _connect(path)
        except (OSError, sqlite3.Error) as exc:
            raise StoreDamagedError(f"cannot open key store {path}: {exc}") from exc
        try:
            self._prepare()
            self._sealer = self._unlock()
            self._upgrade_v1_values()
            if track_shutdown:
                self.unclean_shutdown = self._read_clean_mark() != b"1"
                self._set_sealed_meta("clean", b"0")
            self._data_version = self._read_data_version()
        except BaseException:
            self._conn.close()
            raise

    # -- opening -----------------------------------------------------------------------

    def _prepare(self) -> None:
        with self._db():
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            check = self._conn.execute("PRAGMA quick_check").fetchall()
            if check != [("ok",)]:
                raise StoreDamagedError(f"key store {self.path} failed its integrity check")
            migrate(self._conn)

    def _unlock(self) -> Sealer:
        """Read (or, for a store that seals nothing yet, create) the master key and prove
        it is the one this store was sealed under."""
        check = self._meta_blob("key_check")
        if self.key_file.exists() or check is not None:
            key = read_master_key(self.key_file)
        else:
            key = create_master_key(self.key_file)
            log.info("keystore_master_key_created", key_file=str(self.key_file))
        sealer = Sealer(key)
        aad = associated_data("key-check")
        if check is None:
            self._set_meta("key_check", sealer.seal(_KEY_CHECK, aad))
            return sealer
        try:
            sealer.open(check, aad)
        except SealError as exc:
            raise MasterKeyError(
                f"the master key in {self.key_file} does not open key store {self.path} "
                "(wrong or replaced key file?)"
            ) from exc
        return sealer

    def _upgrade_v1_values(self) -> None:
        """Authenticate what a v1 store kept in clear (once; needs the master key)."""
        if self._meta_blob("v2_sealed") is not None:
            return
        with self._transaction() as conn:
            rows = conn.execute("SELECT dev_eui, key_id, last_fcnt FROM sessions").fetchall()
            for dev_eui, key_id, last in rows:
                conn.execute("UPDATE sessions SET fcnt_tag = ? WHERE dev_eui = ?",
                             (self._fcnt_tag(dev_eui, bytes(key_id), last), dev_eui))
            found = conn.execute("SELECT key, value FROM meta WHERE key IN"
                                 " ('clean', 'sync_seq', 'sync_digest')").fetchall()
            old = {key: value for key, value in found}
            if isinstance(old.get("clean"), int):  # v1 kept 0/1 in clear
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('clean', ?)",
                             (self._seal_meta("clean", b"1" if old["clean"] == 1 else b"0"),))
            if "sync_seq" in old:
                value = _sync_value(int(old["sync_seq"]), bytes(old.get("sync_digest") or b""))
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('sync', ?)",
                             (self._seal_meta("sync", value),))
            conn.execute("DELETE FROM meta WHERE key IN ('sync_seq', 'sync_digest')")
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('v2_sealed', 1)")

    def _read_clean_mark(self) -> bytes | None:
        """A damaged mark counts as an unclean shutdown: counters are then treated as
        possibly one flush old, which loses no uplink."""
        try:
            return self._sealed_meta("clean", b"1")
        except SealError:
            log.warning("keystore_meta_damaged", key="clean", store=str(self.path))
            return None

    def _fcnt_tag(self, dev_eui: str, key_id: bytes, last_fcnt: int | None) -> bytes:
        aad = associated_data("fcnt", dev_eui, key_id, "" if last_fcnt is None else str(last_fcnt))
        return self._sealer.seal(b"", aad)

    def _fcnt_ok(self, dev_eui: str, key_id: bytes, last_fcnt: int | None,
                 tag: bytes | None) -> bool:
        if not isinstance(tag, bytes) or not (last_fcnt is None or type(last_fcnt) is int):
            return False
        aad = associated_data("fcnt", dev_eui, key_id, "" if last_fcnt is None else str(last_fcnt))
        try:
            self._sealer.open(bytes(tag), aad)
        except SealError:
            return False
        return True

    def _seal_meta(self, key: str, value: bytes) -> bytes:
        return self._sealer.seal(value, associated_data("meta", key))

    def _sealed_meta(self, key: str, default: bytes | None) -> bytes | None:
        """A sealed meta value; ``default`` when absent; raises ``SealError`` when damaged."""
        blob = self._meta_blob(key)
        if blob is None:
            return default
        return self._sealer.open(blob, associated_data("meta", key))

    def _set_sealed_meta(self, key: str, value: bytes) -> None:
        self._set_meta(key, self._seal_meta(key, value))

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """Serialise access and turn SQLite failures into ``StoreDamagedError``."""
        with self._lock:
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise StoreDamagedError(f"key store {self.path}: {exc}") from exc
            except UnicodeDecodeError:  # SQLite's own message quoted damaged schema text
                raise StoreDamagedError(f"key store {self.path}: damaged schema") from None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._db() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _meta_blob(self, key: str) -> bytes | None:
        with self._db() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def _set_meta(self, key: str, value: bytes | int) -> None:
        with self._db() as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def _read_data_version(self) -> int:
        with self._db() as conn:
            return int(conn.execute("PRAGMA data_version").fetchone()[0])

    # -- reading -----------------------------------------------------------------------

    def load(self) -> Loaded:
        """Decrypt every row; a row that fails authentication is skipped and reported."""
        with self._db() as conn:
            rows = conn.execute(
                "SELECT dev_eui, dev_addr, mac_version, key_id, secrets, last_fcnt, fcnt_tag"
                " FROM sessions"
            ).fetchall()
            root_rows = conn.execute(
                "SELECT dev_eui, mac_version, join_eui, secrets FROM root_keys"
            ).fetchall()
        loaded = Loaded([], [], [])
        for row in rows:
            stored = self._session_row(*row)
            if stored is None:
                loaded.rejected.append(f"session:{row[0]}")
            else:
                loaded.sessions.append(stored)
        for dev_eui, version, join_eui, blob in root_rows:
            try:
                plain = self._sealer.open(blob, _root_aad(dev_eui, version, join_eui))
                loaded.roots.append(root_from_secrets(dev_eui, version, join_eui, plain))
            except _DAMAGE:
                loaded.rejected.append(f"root:{dev_eui}")
        for name in loaded.rejected:
            log.warning("keystore_row_rejected", row=name, store=str(self.path))
        return loaded

    def _session_row(self, dev_eui: str, dev_addr: str, version: str, key_id: bytes,
                     blob: bytes, last: int | None, tag: bytes | None) -> StoredSession | None:
        """One stored session, or None when any of its fields fails authentication (a bit
        flip may also change a value's type: that is damage too, never a crash)."""
        try:
            plain = self._sealer.open(blob, _session_aad(dev_eui, dev_addr, version, key_id))
            session = session_from_secrets(dev_eui, dev_addr, version, plain, last)
            if not self._fcnt_ok(dev_eui, bytes(key_id), last, tag):
                return None
        except _DAMAGE:
            return None
        return StoredSession(session, bytes(key_id))

    def changed_elsewhere(self) -> bool:
        """True once after another connection (the CLI) committed to the file."""
        version = self._read_data_version()
        changed = version != self._data_version
        self._data_version = version
        return changed

    def sync_state(self) -> tuple[int, bytes]:
        """(last applied sync sequence, digest of that message); (-1, b"") before any.

        Raises ``StoreDamagedError`` when the stored state fails authentication: a
        damaged sequence must refuse key sync, not let an old message be replayed."""
        try:
            value = self._sealed_meta("sync", None)
        except SealError:
            raise StoreDamagedError(f"key store {self.path}: the key-sync state fails "
                                    "authentication") from None
        if value is None:
            return -1, b""
        return int.from_bytes(value[:8], "big", signed=True), value[8:]

    # -- writing -----------------------------------------------------------------------

    def apply(
        self,
        sessions: Iterable[DeviceSession] = (),
        roots: Iterable[RootKey] = (),
        remove: Iterable[str] = (),
        *,
        sync: tuple[int, bytes] | None = None,
    ) -> Applied:
        """Upsert and remove in ONE transaction (all or nothing), optionally recording a
        sync message's sequence and digest with it. Re-applying the same content changes
        nothing. Within one session (same keys) the counter never moves backwards."""
        applied = Applied()
        now = self._now_ns()
        with self._transaction() as conn:
            for dev_eui in remove:
                gone = conn.execute("DELETE FROM sessions WHERE dev_eui = ?", (dev_eui,)).rowcount
                gone += conn.execute("DELETE FROM root_keys WHERE dev_eui = ?", (dev_eui,)).rowcount
                if gone:
                    applied.removed.append(dev_eui)
            for session in sessions:
                stored = self._upsert_session(conn, session, now)
                if stored is not None:
                    applied.stored.append(stored)
            for root in roots:
                if self._upsert_root(conn, root, now):
                    applied.roots.append(root)
            if sync is not None:
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('sync', ?)",
                             (self._seal_meta("sync", _sync_value(*sync)),))
        return applied

    def _existing(self, conn: sqlite3.Connection, dev_eui: str) -> StoredSession | None:
        row = conn.execute(
            "SELECT dev_addr, mac_version, key_id, secrets, last_fcnt, fcnt_tag FROM sessions"
            " WHERE dev_eui = ?",
            (dev_eui,),
        ).fetchone()
        if row is None:
            return None
        return self._session_row(dev_eui, *row)  # a damaged row is simply replaced

    def _upsert_session(
        self, conn: sqlite3.Connection, session: DeviceSession, now: int
    ) -> StoredSession | None:
        old = self._existing(conn, session.dev_eui)
        if old is not None and old.session.same_keys(session):
            last = _max_fcnt(old.session.last_fcnt, session.last_fcnt)
            if last == old.session.last_fcnt and old.session.app_s_key == session.app_s_key:
                return None
            key_id = old.key_id
        else:
            last, key_id = session.last_fcnt, os.urandom(KEY_ID_LEN)
        fresh = DeviceSession(
            session.dev_eui, session.dev_addr, session.mac_version, session.nwk_s_enc_key,
            session.s_nwk_s_int_key, session.f_nwk_s_int_key, session.app_s_key, last,
        )
        aad = _session_aad(session.dev_eui, session.dev_addr, session.mac_version, key_id)
        conn.execute(
            "INSERT OR REPLACE INTO sessions (dev_eui, dev_addr, mac_version, key_id, secrets,"
            " last_fcnt, updated_ns, fcnt_tag) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (session.dev_eui, session.dev_addr, session.mac_version, key_id,
             self._sealer.seal(fresh.secrets(), aad), last, now,
             self._fcnt_tag(session.dev_eui, key_id, last)),
        )
        return StoredSession(fresh, key_id)

    def _upsert_root(self, conn: sqlite3.Connection, root: RootKey, now: int) -> bool:
        row = conn.execute(
            "SELECT mac_version, join_eui, secrets FROM root_keys WHERE dev_eui = ?",
            (root.dev_eui,),
        ).fetchone()
        if row is not None and (row[0], row[1]) == (root.mac_version, root.join_eui):
            try:
                aad = _root_aad(root.dev_eui, row[0], row[1])
                if self._sealer.open(row[2], aad) == root.secrets():
                    return False
            except SealError:
                pass
        aad = _root_aad(root.dev_eui, root.mac_version, root.join_eui)
        conn.execute(
            "INSERT OR REPLACE INTO root_keys (dev_eui, mac_version, join_eui, secrets,"
            " updated_ns) VALUES (?, ?, ?, ?, ?)",
            (root.dev_eui, root.mac_version, root.join_eui,
             self._sealer.seal(root.secrets(), aad), now),
        )
        return True

    def save_fcnts(self, counters: Mapping[str, tuple[bytes, int]]) -> int:
        """Persist last accepted counters ``{dev_eui: (key_id, fcnt)}`` in one transaction.

        A row whose keys changed meanwhile (other ``key_id``) or that already holds a
        higher counter is left alone. Returns how many rows moved.
        """
        if not counters:
            return 0
        moved = 0
        with self._transaction() as conn:
            for dev_eui, (key_id, fcnt) in counters.items():
                moved += conn.execute(
                    "UPDATE sessions SET last_fcnt = ?, fcnt_tag = ? WHERE dev_eui = ?"
                    " AND key_id = ? AND (last_fcnt IS NULL OR last_fcnt < ?)",
                    (fcnt, self._fcnt_tag(dev_eui, key_id, fcnt), dev_eui, key_id, fcnt),
                ).rowcount
        return moved

    def close(self) -> None:
        """Record a clean shutdown (daemon) and close the file."""
        try:
            if self._track:
                self._set_sealed_meta("clean", b"1")
        finally:
            with self._lock:
                self._conn.close()

    def __repr__(self) -> str:
        return f"KeyStore(path={str(self.path)!r})"


def _max_fcnt(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else max(a, b)


_DAMAGE = (SealError, RecordError, TypeError, ValueError)
"""What a damaged row raises while being read back."""


def _sync_value(seq: int, digest: bytes) -> bytes:
    return seq.to_bytes(8, "big", signed=True) + digest


def _session_aad(dev_eui: str, dev_addr: str, version: str, key_id: bytes) -> bytes:
    return associated_data("session", dev_eui, dev_addr, version, bytes(key_id))


def _root_aad(dev_eui: str, version: str, join_eui: str | None) -> bytes:
    return associated_data("root", dev_eui, version, join_eui or "")
