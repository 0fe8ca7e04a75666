"""Numbered schema migrations of the key store, tracked in ``PRAGMA user_version``.

Adding version 2 means appending one function to ``MIGRATIONS``; the shared stepper
(``common.sqlite_migrate``) commits each step with its version bump, so a crash mid-way
resumes from the last finished step.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from common.sqlite_migrate import NewerSchemaError
from common.sqlite_migrate import migrate as migrate_schema
from packet_forwarder.keystore.errors import StoreDamagedError

Migration = Callable[[sqlite3.Connection], None]


def _v1(conn: sqlite3.Connection) -> None:
    """Sessions (one per DevEUI, indexed by DevAddr for the shared-address lookup), root
    keys, and a small key/value table (key check, clean-shutdown flag, sync sequence)."""
    conn.execute(
        """CREATE TABLE sessions (
            dev_eui TEXT PRIMARY KEY,
            dev_addr TEXT NOT NULL,
            mac_version TEXT NOT NULL,
            key_id BLOB NOT NULL,
            secrets BLOB NOT NULL,
            last_fcnt INTEGER,
            updated_ns INTEGER NOT NULL
        )"""
    )
    conn.execute("CREATE INDEX sessions_dev_addr ON sessions (dev_addr)")
    conn.execute(
        """CREATE TABLE root_keys (
            dev_eui TEXT PRIMARY KEY,
            mac_version TEXT NOT NULL,
            join_eui TEXT,
            secrets BLOB NOT NULL,
            updated_ns INTEGER NOT NULL
        )"""
    )
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB)")


def _v2(conn: sqlite3.Connection) -> None:
    """Each session's counter gets an authentication tag (GMAC bound to the row's DevEUI
    and key id): a flipped bit in ``last_fcnt`` would otherwise silently reopen a replay
    window or lock a device out. Rows from v1 are tagged by the store at its next open,
    which alone holds the master key."""
    conn.execute("ALTER TABLE sessions ADD COLUMN fcnt_tag BLOB")


MIGRATIONS: tuple[Migration, ...] = (_v1, _v2)


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the schema to ``len(migrations)``; refuse a file from a newer version.

    The stepping itself is the shared one (one committed step per version); a too-new
    file is reported as a damaged key store, which the store's opener knows how to say.
    """
    try:
        return migrate_schema(conn, migrations)
    except NewerSchemaError as exc:
        raise StoreDamagedError(f"key store {exc}") from None
