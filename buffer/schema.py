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

__all__ = ["MIGRATIONS", "ForeignSchemaError", "Migration", "NewerSchemaError",
           "adopt_unversioned", "check_shape", "migrate", "user_version"]


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


def _v2(conn: sqlite3.Connection) -> None:
    """A checksum per row, the boot id by reference, and a quarantine.

    * ``crc``: rows written before v2 get theirs computed here, so afterwards a row
      without a valid one is damaged.
    * ``boot``: a number in ``boots`` instead of the 36-character boot id in every
      row. At 10 frames/s in an outage that is a tenth of the bytes written per frame,
      which is what keeps a WAL fsynced at every commit within the card's budget.
    * ``codec``/``dictionaries``: bodies are deflated with a preset dictionary made
      from this file's first bodies (serialised UplinkFrames repeat the gateway id,
      frequency and modulation): 110 bytes become about 40, and those bytes are
      written twice (WAL, then the file) in an outage. ``codec`` 0 is a raw body.
    * ``quarantine``: untyped columns on purpose, so a damaged row is kept exactly
      as it was found, whatever its types.
    """
    from buffer.records import checksum  # late: records does not need the schema

    conn.execute("CREATE TABLE boots (id INTEGER PRIMARY KEY, boot_id TEXT NOT NULL UNIQUE)")
    conn.execute("INSERT INTO boots (boot_id) SELECT DISTINCT boot_id FROM frames")
    conn.execute(
        """CREATE TABLE frames_v2 (
            seq INTEGER PRIMARY KEY,
            device TEXT NOT NULL,
            body BLOB NOT NULL,
            received_ns INTEGER NOT NULL,
            monotonic_ns INTEGER NOT NULL,
            boot INTEGER NOT NULL,
            clock_synced INTEGER NOT NULL,
            size INTEGER NOT NULL,
            crc INTEGER,
            codec INTEGER NOT NULL DEFAULT 0
        )"""
    )
    rows = conn.execute(
        "SELECT f.seq, f.device, f.body, f.received_ns, f.monotonic_ns, f.boot_id,"
        " f.clock_synced, f.size, b.id FROM frames f JOIN boots b ON b.boot_id = f.boot_id"
    ).fetchall()
    converted = []
    for row in rows:
        try:
            crc: int | None = checksum(*row[:7])
        except (TypeError, ValueError, OverflowError):
            crc = None  # quarantined when first read
        converted.append((*row[:5], row[8], row[6], row[7], crc))
    if converted:
        conn.executemany("INSERT INTO frames_v2 (seq, device, body, received_ns, monotonic_ns,"
                         " boot, clock_synced, size, crc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         converted)
    conn.execute("DROP TABLE frames")
    conn.execute("ALTER TABLE frames_v2 RENAME TO frames")
    conn.execute("CREATE TABLE dictionaries (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
    conn.execute(
        """CREATE TABLE quarantine (
            id INTEGER PRIMARY KEY,
            seq, device, body, received_ns, monotonic_ns, boot, clock_synced, size, crc, codec,
            reason TEXT NOT NULL,
            quarantined_ns INTEGER NOT NULL
        )"""
    )


def _v3(conn: sqlite3.Connection) -> None:
    """One file for every network server: a frame is stored once, with the servers owed.

    ``owed`` is a bitmask of the servers that have not yet acknowledged the row (bit
    numbers in ``servers``); a row whose mask reaches 0 is deleted. A bitmask rather
    than a ``deliveries(seq, server)`` table: the common single-server gateway writes
    no second B-tree per frame, and an ack of the last server is still one DELETE.
    Rows of an older file belong to server ``default`` (bit 1), whose file it was.
    The mask is not covered by ``crc`` (it changes with every ack); a flipped bit can
    only re-send a frame to a server or stop owing it, never alter what is sent.
    """
    conn.execute("ALTER TABLE frames ADD COLUMN owed INTEGER NOT NULL DEFAULT 1")
    conn.execute("CREATE TABLE servers (name TEXT PRIMARY KEY, bit INTEGER NOT NULL UNIQUE)")
    conn.execute("INSERT INTO servers (name, bit) VALUES ('default', 1)")


MIGRATIONS: tuple[Migration, ...] = (_v1, _v2, _v3)

FRAME_TYPES = {"seq": "INTEGER", "device": "TEXT", "body": "BLOB", "received_ns": "INTEGER",
               "monotonic_ns": "INTEGER", "boot": "INTEGER", "clock_synced": "INTEGER",
               "size": "INTEGER", "crc": "INTEGER", "codec": "INTEGER",
               "owed": "INTEGER"}
FRAME_COLUMNS = tuple(FRAME_TYPES)
"""Columns the store reads and writes; a ``frames`` table without one of them is foreign."""
V1_COLUMNS = ("seq", "device", "body", "received_ns", "monotonic_ns", "boot_id",
              "clock_synced", "size")


class ForeignSchemaError(Exception):
    """The file holds tables this software did not write (or not in this shape)."""


def _columns(conn: sqlite3.Connection, table: str) -> dict[str, tuple[int, object]]:
    """``name -> (notnull, default)`` of a table's columns; empty when it does not exist."""
    rows = conn.execute(f"PRAGMA table_info({table})").fetchall()
    return {str(r[1]): (int(r[3]), r[4]) for r in rows}


def _types(conn: sqlite3.Connection, table: str) -> dict[str, tuple[str, int]]:
    """``name -> (declared type, primary-key position)``."""
    rows = conn.execute(f"PRAGMA table_info({table})").fetchall()
    return {str(r[1]): (str(r[2]).upper(), int(r[5])) for r in rows}


def adopt_unversioned(conn: sqlite3.Connection) -> bool:
    """A file at ``user_version`` 0 that already has our v1 tables is marked v1.

    Such a file comes from a copy made with tools that drop the header field (or
    from a hand-made file). Its rows are kept: the v2 step then checksums them.
    True when adopted; ``ForeignSchemaError`` when it holds tables of another shape.
    """
    if user_version(conn) != 0:
        return False
    tables = {str(r[0]) for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
    if not tables:
        return False
    if tables == {"frames", "meta"} and tuple(_columns(conn, "frames")) == V1_COLUMNS \
            and tuple(_columns(conn, "meta")) == ("key", "value"):
        conn.execute("PRAGMA user_version = 1")
        return True
    raise ForeignSchemaError(f"user_version 0 but tables {sorted(tables)} exist")


def check_shape(conn: sqlite3.Connection) -> None:
    """Raise ``ForeignSchemaError`` unless ``frames`` can be read and written as ours.

    Extra columns are tolerated when an insert can leave them out (nullable or with a
    default), which is what a later migration adding a column looks like. Declared
    types are compared too: one flipped bit in the stored ``CREATE TABLE`` text
    (``PRIMAZY KEY``) passes ``quick_check`` yet turns ``seq`` into a plain column.
    """
    columns = _columns(conn, "frames")
    types = _types(conn, "frames")
    wrong = [name for name, want in FRAME_TYPES.items()
             if name in types and types[name] != (want, 1 if name == "seq" else 0)]
    if wrong:
        raise ForeignSchemaError(f"frames columns of another type: {wrong}")
    missing = [c for c in FRAME_COLUMNS if c not in columns]
    blocking = [name for name, (notnull, default) in columns.items()
                if name not in FRAME_COLUMNS and notnull and default is None]
    if missing or blocking:
        raise ForeignSchemaError(
            f"frames table has columns {sorted(columns)}: missing {missing},"
            f" unknown required {blocking}")
    if not all(_columns(conn, t) for t in ("quarantine", "meta", "boots", "dictionaries",
                                           "servers")):
        raise ForeignSchemaError("meta, boots, dictionaries, servers or quarantine table"
                                 " missing")


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the buffer's schema up to date (autocommit connection; see ``sqlite_migrate``)."""
    return migrate_steps(conn, migrations)
