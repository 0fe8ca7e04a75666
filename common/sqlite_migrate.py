"""Numbered SQLite schema steps tracked in ``PRAGMA user_version``, one commit per step.

Each migration moves the schema up by exactly one version inside the caller's
transaction; the step and its version bump commit together, so a crash mid-way resumes
from the last finished step. Shared by the uplink buffer and the key store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

Migration = Callable[[sqlite3.Connection], None]


class NewerSchemaError(Exception):
    """The file was written by a newer version of this software."""


def user_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration]) -> int:
    """Bring the schema to ``len(migrations)``, one committed step per version.

    The connection must be in autocommit mode (``isolation_level=None``).
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
