"""The key store on a real SQLite file: encryption at rest, reopen, wrong key, tampering,
counter persistence, clean-shutdown tracking, and record validation."""

from __future__ import annotations

import os
import random
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from packet_forwarder.keystore import (
    KeyStore,
    MasterKeyError,
    RecordError,
    StoreDamagedError,
)
from packet_forwarder.keystore.records import records_from_fields
from tests.support.keystore import make_device, open_store

RNG_SEED = 7


def store_bytes(tmp_path: Path) -> bytes:
    """Every byte on disk for the store: the main file plus WAL and shared memory."""
    data = b""
    for name in ("keys.sqlite", "keys.sqlite-wal", "keys.sqlite-shm"):
        path = tmp_path / name
        if path.exists():
            data += path.read_bytes()
    return data


def test_keys_are_not_on_disk_in_clear(tmp_path: Path) -> None:
    rng = random.Random(RNG_SEED)
    devices = [make_device(rng), make_device(rng, "1.1.0")]
    store = open_store(tmp_path)
    store.apply([d.session(10) for d in devices], [d.root() for d in devices])
    raw = store_bytes(tmp_path)
    store.close()
    raw += store_bytes(tmp_path)
    for device in devices:
        for key_hex in device.all_secret_hex():
            assert key_hex.encode() not in raw
            assert bytes.fromhex(key_hex) not in raw
            assert key_hex.upper().encode() not in raw
        assert device.eui_hex.encode() in raw  # public columns are in clear, so it is readable


def test_store_survives_reopen(tmp_path: Path) -> None:
    rng = random.Random(RNG_SEED)
    d10, d11 = make_device(rng), make_device(rng, "1.1.0")
    store = open_store(tmp_path)
    store.apply([d10.session(100), d11.session()], [d10.root()])
    store.close()
    loaded = open_store(tmp_path).load()
    by_eui = {s.session.dev_eui: s.session for s in loaded.sessions}
    assert by_eui[d10.eui_hex] == d10.session(100)
    assert by_eui[d10.eui_hex].last_fcnt == 99
    assert by_eui[d11.eui_hex] == d11.session()
    assert by_eui[d11.eui_hex].last_fcnt is None
    assert loaded.roots == [d10.root()]
    assert loaded.rejected == []


def test_master_key_file_is_created_private(tmp_path: Path) -> None:
    open_store(tmp_path).close()
    mode = stat.S_IMODE((tmp_path / "master.key").stat().st_mode)
    assert mode == 0o600
    assert len((tmp_path / "master.key").read_bytes()) == 32


def test_wrong_master_key_is_one_clear_error(tmp_path: Path) -> None:
    rng = random.Random(RNG_SEED)
    store = open_store(tmp_path)
    store.apply([make_device(rng).session()])
    store.close()
    key_file = tmp_path / "master.key"
    key_file.write_bytes(os.urandom(32))
    with pytest.raises(MasterKeyError, match="does not open key store"):
        open_store(tmp_path)


def test_missing_master_key_for_a_sealed_store_is_refused_not_recreated(tmp_path: Path) -> None:
    open_store(tmp_path).close()
    (tmp_path / "master.key").unlink()
    with pytest.raises(MasterKeyError, match="does not exist"):
        open_store(tmp_path)
    assert not (tmp_path / "master.key").exists()


def test_master_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    open_store(tmp_path).close()
    os.chmod(tmp_path / "master.key", 0o644)
    with pytest.raises(MasterKeyError, match="chmod 600"):
        open_store(tmp_path)


def test_truncated_master_key_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "master.key"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"short")
    os.close(fd)
    with pytest.raises(MasterKeyError, match="holds 5 bytes"):
        open_store(tmp_path)


def test_swapped_ciphertexts_are_rejected(tmp_path: Path) -> None:
    rng = random.Random(RNG_SEED)
    a, b, c = make_device(rng), make_device(rng), make_device(rng)
    store = open_store(tmp_path)
    store.apply([a.session(), b.session(), c.session()])
    store.close()
    conn = sqlite3.connect(tmp_path / "keys.sqlite")
    blobs = dict(conn.execute("SELECT dev_eui, secrets FROM sessions").fetchall())
    conn.execute("UPDATE sessions SET secrets = ? WHERE dev_eui = ?", (blobs[b.eui_hex], a.eui_hex))
    conn.execute("UPDATE sessions SET secrets = ? WHERE dev_eui = ?", (blobs[a.eui_hex], b.eui_hex))
    conn.commit()
    conn.close()
    loaded = open_store(tmp_path).load()
    assert sorted(loaded.rejected) == sorted([f"session:{a.eui_hex}", f"session:{b.eui_hex}"])
    assert [s.session.dev_eui for s in loaded.sessions] == [c.eui_hex]


def test_row_moved_to_another_dev_addr_is_rejected(tmp_path: Path) -> None:
    rng = random.Random(RNG_SEED)
    a = make_device(rng)
    store = open_store(tmp_path)
    store.apply([a.session()])
    store.close()
    conn = sqlite3.connect(tmp_path / "keys.sqlite")
    conn.execute("UPDATE sessions SET dev_addr = '26ffffff'")
    conn.commit()
    conn.close()
    assert open_store(tmp_path).load().rejected == [f"session:{a.eui_hex}"]


def test_reapplying_the_same_session_changes_nothing(tmp_path: Path) -> None:
    rng = random.Random(RNG_SEED)
    a = make_device(rng)
    store = open_store(tmp_path)
    assert store.apply([a.session(5)]).changes == 1
    assert store.apply([a.session(5)]).changes == 0
    assert store.apply([a.session(3)]).changes == 0  # same keys: counters never go back
    assert store.load().sessions[0].session.last_fcnt == 4


def test_new_keys_replace_the_session_and_its_counter(tmp_path: Path) -> None:
    rng = random.Random(RNG_SEED)
    a = make_device(rng)
    store = open_store(tmp_path)
    first = store.apply([a.session(500)]).stored[0]
    rejoined = make_device(rng)
    rejoined.dev_eui = a.dev_eui
    second = store.apply([rejoined.session()]).stored[0]
    assert second.key_id != first.key_id
    assert second.session.last_fcnt is None
    # A late counter flush for the old session must not land on the new one.
    assert store.save_fcnts({a.eui_hex: (first.key_id, 900)}) == 0
    assert store.load().sessions[0].session.last_fcnt is None


def test_save_fcnts_only_moves_forward(tmp_path: Path) -> None:
    rng = random.Random(RNG_SEED)
    a = make_device(rng)
    store = open_store(tmp_path)
    stored = store.apply([a.session(10)]).stored[0]
    assert store.save_fcnts({a.eui_hex: (stored.key_id, 20)}) == 1
    assert store.save_fcnts({a.eui_hex: (stored.key_id, 15)}) == 0
    store.close()
    assert open_store(tmp_path).load().sessions[0].session.last_fcnt == 20


def test_remove_deletes_session_and_root(tmp_path: Path) -> None:
    rng = random.Random(RNG_SEED)
    a, b = make_device(rng), make_device(rng)
    store = open_store(tmp_path)
    store.apply([a.session(), b.session()], [a.root()])
    assert store.apply(remove=[a.eui_hex]).removed == [a.eui_hex]
    assert store.apply(remove=[a.eui_hex]).removed == []
    loaded = store.load()
    assert [s.session.dev_eui for s in loaded.sessions] == [b.eui_hex]
    assert loaded.roots == []


def test_unclean_shutdown_is_detected(tmp_path: Path) -> None:
    store = open_store(tmp_path, track_shutdown=True)
    assert not store.unclean_shutdown
    store.close()
    crash_in_child(tmp_path)
    assert open_store(tmp_path, track_shutdown=True).unclean_shutdown


def crash_in_child(tmp_path: Path) -> None:
    """A real process opens the store as the daemon does and dies without closing it."""
    code = (
        "import os, sys; from pathlib import Path; from packet_forwarder.keystore import KeyStore;"
        "d = Path(sys.argv[1]);"
        "KeyStore(d / 'keys.sqlite', d / 'master.key', track_shutdown=True); os._exit(0)"
    )
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, cwd=root)


def test_tools_do_not_touch_the_shutdown_mark(tmp_path: Path) -> None:
    daemon = open_store(tmp_path, track_shutdown=True)
    open_store(tmp_path).close()  # the CLI, while the daemon runs
    daemon.close()
    assert not open_store(tmp_path, track_shutdown=True).unclean_shutdown


def test_schema_version_is_recorded_and_newer_refused(tmp_path: Path) -> None:
    open_store(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "keys.sqlite")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.execute("PRAGMA user_version = 9")
    conn.commit()
    conn.close()
    with pytest.raises(StoreDamagedError, match="newer"):
        open_store(tmp_path)


def test_garbage_file_is_a_typed_error(tmp_path: Path) -> None:
    (tmp_path / "keys.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(StoreDamagedError):
        open_store(tmp_path)


def test_changed_elsewhere_sees_other_connections_only(tmp_path: Path) -> None:
    rng = random.Random(RNG_SEED)
    daemon = open_store(tmp_path)
    daemon.apply([make_device(rng).session()])
    assert not daemon.changed_elsewhere()
    cli = KeyStore(tmp_path / "keys.sqlite", tmp_path / "master.key")
    cli.apply([make_device(rng).session()])
    cli.close()
    assert daemon.changed_elsewhere()
    assert not daemon.changed_elsewhere()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"dev_eui": "0102"}, "dev_eui"),
        ({"dev_addr": "zz000000"}, "dev_addr"),
        ({"mac_version": "1.2.0"}, "mac_version"),
        ({"f_cnt_up": "-1"}, "f_cnt_up"),
        ({"f_cnt_up": 2**32}, "f_cnt_up"),
        ({"nwk_s_enc_key": "00" * 15}, "nwk_s_enc_key"),
        ({"app_s_key": "xyz"}, "app_s_key"),
    ],
)
def test_bad_fields_are_named(change: dict[str, object], field: str) -> None:
    row = make_device(random.Random(RNG_SEED)).row()
    row.update(change)
    with pytest.raises(RecordError) as info:
        records_from_fields(row)
    assert info.value.field == field


def test_1_0_network_keys_must_agree_and_one_is_enough() -> None:
    device = make_device(random.Random(RNG_SEED))
    row = device.row()
    row["s_nwk_s_int_key"] = "11" * 16
    with pytest.raises(RecordError, match="must all be the NwkSKey"):
        records_from_fields(row)
    row = device.row()
    del row["s_nwk_s_int_key"], row["nwk_s_enc_key"]
    session, _ = records_from_fields(row)
    assert session == device.session()


def test_1_1_needs_all_three_network_keys() -> None:
    row = make_device(random.Random(RNG_SEED), "1.1.0").row()
    del row["s_nwk_s_int_key"]
    with pytest.raises(RecordError, match="s_nwk_s_int_key"):
        records_from_fields(row)


def test_chirpstack_camel_case_and_enum_versions_are_accepted() -> None:
    device = make_device(random.Random(RNG_SEED))
    row = device.row(7)
    camel = {
        "devEui": row["dev_eui"], "devAddr": row["dev_addr"], "macVersion": "LORAWAN_1_0_3",
        "nwkSEncKey": row["nwk_s_enc_key"], "sNwkSIntKey": row["s_nwk_s_int_key"],
        "fNwkSIntKey": row["f_nwk_s_int_key"], "appSKey": row["app_s_key"], "fCntUp": 7,
        "nFCntDown": 3,
    }
    session, root = records_from_fields(camel)
    assert session == device.session(7)
    assert root is None


def test_key_values_never_appear_in_errors_or_reprs() -> None:
    device = make_device(random.Random(RNG_SEED))
    row = device.row()
    bad = device.secrets_hex()[0][:-1]  # 31 digits
    row["nwk_s_enc_key"] = row["s_nwk_s_int_key"] = row["f_nwk_s_int_key"] = bad
    with pytest.raises(RecordError) as info:
        records_from_fields(row)
    assert bad not in str(info.value)
    text = repr(device.session()) + repr(device.root())
    for key_hex in device.all_secret_hex():
        assert key_hex not in text
        assert repr(bytes.fromhex(key_hex)) not in text
