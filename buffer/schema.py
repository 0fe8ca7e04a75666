"""Numbered schema migrations of the uplink store, tracked in ``PRAGMA user_version``.

Each migration is a function that moves the schema up by exactly one version
inside the caller's transaction; adding v2 means appending one function to
``MIGRATIONS``. Version 0 is an empty file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from common.sqlite_migrate import Migration, NewerSchemaError, user_version
from common.sqlite_migrate import migrate as migrate_steps

__all__ = ["MIGRATIONS", "Migration", "NewerSchemaError", "migrate", "user_version"]


def _v1(conn: sqlite3.Connection) -> None:
    """Frames keyed by seq (insertion order is delivery order) and a small key/value table.

    No index on ``device``: it would double the pages written per frame, and the
    per-device counts are only needed once, at open.
    """
    conn.execute(
        """CREATE TABLE frames (
            seq INTEGER PRIMARY KEY,
            device TEXT NOT NULL,
            body BLOB NOT NULL,
            received_ns INTEGER NOT NULL,
            monotonic_ns INTEGER NOT NULL,
            boot_id TEXT NOT NULL,
            clock_synced INTEGER NOT NULL,
            size INTEGER NOT NULL
        )"""
    )
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")


MIGRATIONS: tuple[Migration, ...] = (_v1,)


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the buffer's schema up to date (autocommit connection; see ``sqlite_migrate``)."""
    return migrate_steps(conn, migrations)
