"""Issue 16 point 8: every stored field of the key store is authenticated or harmless.

One test per column: flip one bit of the stored value and reopen. An authenticated
field makes its row rejected (or the store refuse to open, or key sync refuse); a
harmless one changes nothing the gateway does. Then 30 seeded single-bit flips
anywhere in the file: none may change a loaded session or the sync state unnoticed.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
from pathlib import Path

import pytest

from packet_forwarder.keystore import KeyStore, KeyStoreError, MasterKeyError, StoreDamagedError
from packet_forwarder.keystore.store import Loaded
from tests.support.keystore import make_device, open_store

SYNC = (5, b"\x11" * 32)


def populate(tmp_path: Path) -> Loaded:
    store = open_store(tmp_path, track_shutdown=True)
    device = make_device(random.Random(16))
    store.apply([device.session(100)], [device.root()], sync=SYNC)
    loaded = store.load()
    store.close()
    return loaded


def flip(tmp_path: Path, table: str, column: str, key: str | None = None) -> None:
    """Flip the lowest bit of ``column``'s first byte (or of the integer) in one row."""
    conn = sqlite3.connect(tmp_path / "keys.sqlite")
    where, args = ("WHERE key = ?", (key,)) if key is not None else ("", ())
    (value,) = conn.execute(f"SELECT {column} FROM {table} {where} LIMIT 1", args).fetchone()
    if isinstance(value, int):
        changed: object = value ^ 1
    elif isinstance(value, str):
        changed = chr(ord(value[0]) ^ 1) + value[1:]
    else:
        changed = bytes([value[0] ^ 1]) + bytes(value[1:])
    conn.execute(f"UPDATE {table} SET {column} = ? {where}", (changed, *args))
    conn.commit()
    conn.close()


AUTHENTICATED = [("sessions", c) for c in ("dev_eui", "dev_addr", "mac_version", "key_id",
                                           "secrets", "last_fcnt", "fcnt_tag")]
AUTHENTICATED += [("root_keys", c) for c in ("dev_eui", "mac_version", "join_eui", "secrets")]


@pytest.mark.parametrize(("table", "column"), AUTHENTICATED)
def test_a_flipped_bit_in_an_authenticated_column_rejects_the_row(
        tmp_path: Path, table: str, column: str) -> None:
    before = populate(tmp_path)
    flip(tmp_path, table, column)
    loaded = open_store(tmp_path).load()
    kind = "session" if table == "sessions" else "root"
    assert len(loaded.rejected) == 1 and loaded.rejected[0].startswith(kind + ":")
    if kind == "session":
        assert loaded.sessions == [] and loaded.roots == before.roots
    else:
        assert loaded.roots == [] and loaded.sessions == before.sessions


@pytest.mark.parametrize("table", ["sessions", "root_keys"])
def test_updated_ns_is_harmless(tmp_path: Path, table: str) -> None:
    before = populate(tmp_path)
    flip(tmp_path, table, "updated_ns")
    store = open_store(tmp_path)
    assert store.load() == before and store.sync_state() == SYNC


def test_meta_key_check_refuses_the_store(tmp_path: Path) -> None:
    populate(tmp_path)
    flip(tmp_path, "meta", "value", "key_check")
    with pytest.raises(MasterKeyError):
        open_store(tmp_path)


def test_meta_sync_state_refuses_key_sync_rather_than_allow_a_replay(tmp_path: Path) -> None:
    populate(tmp_path)
    flip(tmp_path, "meta", "value", "sync")
    with pytest.raises(StoreDamagedError, match="key-sync state"):
        open_store(tmp_path).sync_state()


def test_meta_clean_mark_damaged_counts_as_unclean(tmp_path: Path) -> None:
    populate(tmp_path)
    flip(tmp_path, "meta", "value", "clean")
    assert open_store(tmp_path, track_shutdown=True).unclean_shutdown


def test_meta_upgrade_marker_is_harmless(tmp_path: Path) -> None:
    before = populate(tmp_path)
    flip(tmp_path, "meta", "value", "v2_sealed")
    store = open_store(tmp_path)
    assert store.load() == before and store.sync_state() == SYNC


def test_every_column_is_covered() -> None:
    conn = sqlite3.connect(":memory:")
    from packet_forwarder.keystore.schema import migrate
    migrate(conn)
    covered = {*AUTHENTICATED, ("sessions", "updated_ns"), ("root_keys", "updated_ns"),
               ("meta", "key"), ("meta", "value")}
    for table in ("sessions", "root_keys", "meta"):
        for row in conn.execute(f"PRAGMA table_info({table})"):
            assert (table, row[1]) in covered, f"{table}.{row[1]} has no damage test"


def test_a_v1_store_is_upgraded_with_its_counters_and_sync_state(tmp_path: Path) -> None:
    before = populate(tmp_path)
    store = open_store(tmp_path)
    seal_ok = store.sync_state()
    store.close()
    conn = sqlite3.connect(tmp_path / "keys.sqlite")   # back to what v1 kept, in clear
    conn.execute("ALTER TABLE sessions DROP COLUMN fcnt_tag")
    conn.execute("DELETE FROM meta WHERE key IN ('sync', 'v2_sealed', 'clean')")
    conn.execute("INSERT INTO meta VALUES ('sync_seq', ?), ('sync_digest', ?), ('clean', 1)",
                 (SYNC[0], SYNC[1]))
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    upgraded = open_store(tmp_path, track_shutdown=True)
    assert upgraded.load() == before and upgraded.sync_state() == seal_ok == SYNC
    assert not upgraded.unclean_shutdown


def test_thirty_single_bit_flips_in_the_file_never_go_unnoticed(tmp_path: Path) -> None:
    pristine = tmp_path / "pristine"
    pristine.mkdir()
    before = populate(pristine)
    original = (pristine / "keys.sqlite").read_bytes()
    # flips in zero-filled free space prove nothing: aim at the bytes that hold something
    used = [i for i, b in enumerate(original) if b and i >= 100]
    rng = random.Random(1616)
    outcomes: dict[str, int] = {}
    for i in range(30):
        case = tmp_path / f"flip{i}"
        shutil.copytree(pristine, case)
        data = bytearray((case / "keys.sqlite").read_bytes())
        at = rng.choice(used)
        data[at] ^= 1 << rng.randrange(8)
        (case / "keys.sqlite").write_bytes(bytes(data))
        try:
            store = KeyStore(case / "keys.sqlite", case / "master.key")
            loaded = store.load()
            sync = store.sync_state()
        except KeyStoreError:
            outcomes["refused"] = outcomes.get("refused", 0) + 1
            continue
        for stored in loaded.sessions:
            assert stored in before.sessions, f"flip at byte {at} changed a session unnoticed"
        for root in loaded.roots:
            assert root in before.roots, f"flip at byte {at} changed root keys unnoticed"
        assert sync == SYNC, f"flip at byte {at} changed the sync state unnoticed"
        outcome = "rejected_row" if loaded.rejected else "no_effect"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert sum(outcomes.values()) == 30
    assert outcomes.get("no_effect", 0) < 30, outcomes  # the flips did reach the data
