"""Numbered schema migrations of the uplink store, tracked in ``PRAGMA user_version``.

Each migration is a function that moves the schema up by exactly one version
inside the caller's transaction; adding v2 means appending one function to
``MIGRATIONS``. Version 0 is an empty file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

Migration = Callable[[sqlite3.Connection], None]


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


class NewerSchemaError(Exception):
    """The file was written by a newer version of this software."""


def user_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the schema to ``len(migrations)``, one committed step per version.

    The connection must be in autocommit mode (``isolation_level=None``); each
    step and its ``user_version`` bump commit together, so a crash mid-way
    resumes from the last finished step.
    """
    current = user_version(conn)
    target = len(migrations)
    if current > target:
        raise NewerSchemaError(f"schema version {current} is newer than {target}")
    for version in range(current, target):
        conn.execute("BEGIN IMMEDIATE")
        try:
            migrations[version](conn)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return target
