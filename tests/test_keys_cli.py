"""``lora-gateway keys import|list|remove`` on real files."""

from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

import pytest

from gateway.keys_cli import add_keys_commands
from tests.support.keystore import Device, make_device, open_store

FIELDS = ["dev_eui", "dev_addr", "mac_version", "nwk_s_enc_key", "s_nwk_s_int_key",
          "f_nwk_s_int_key", "app_s_key", "f_cnt_up", "nwk_key", "join_eui"]


def run(tmp_path: Path, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="lora-gateway")
    add_keys_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        ["keys", *argv, "--store", str(tmp_path / "keys.sqlite"),
         "--key-file", str(tmp_path / "master.key")])
    return int(args.func(args))


def write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def devices() -> list[Device]:
    rng = random.Random(21)
    return [make_device(rng), make_device(rng, "1.1.0"), make_device(rng, "1.0.4")]


def test_import_csv_then_list_without_secrets(
    tmp_path: Path, devices: list[Device], capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [devices[0].row(12, with_root=True), devices[1].row(), devices[2].row(0)]
    path = write_csv(tmp_path / "devices.csv", rows)
    assert run(tmp_path, "import", str(path)) == 0
    assert "imported 3 session(s) and 1 root key(s)" in capsys.readouterr().out
    assert run(tmp_path, "list") == 0
    table = capsys.readouterr().out
    assert run(tmp_path, "list", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    sessions = {e["dev_eui"]: e for e in listed if e["kind"] == "session"}
    assert sessions[devices[0].eui_hex]["f_cnt_up"] == 12
    assert sessions[devices[2].eui_hex]["f_cnt_up"] is None
    assert [e["dev_eui"] for e in listed if e["kind"] == "root"] == [devices[0].eui_hex]
    for key_hex in [h for d in devices for h in d.all_secret_hex()]:
        assert key_hex not in table and key_hex not in json.dumps(listed)
    assert devices[1].addr_hex in table


def test_import_json_is_idempotent(
    tmp_path: Path, devices: list[Device], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "devices.json"
    path.write_text(json.dumps([d.row() for d in devices], indent=2))
    assert run(tmp_path, "import", str(path)) == 0
    assert run(tmp_path, "import", str(path), "--format", "json") == 0
    assert "imported 0 session(s) and 0 root key(s)" in capsys.readouterr().out.splitlines()[-1]
    assert len(open_store(tmp_path).load().sessions) == 3


def test_bad_csv_rows_are_reported_by_line_and_nothing_is_imported(
    tmp_path: Path, devices: list[Device], capsys: pytest.CaptureFixture[str]
) -> None:
    bad_key = devices[1].row()
    bad_key["f_nwk_s_int_key"] = "zz" * 16
    bad_version = devices[2].row()
    bad_version["mac_version"] = "1.0.9"
    rows = [devices[0].row(), bad_key, bad_version, devices[0].row()]
    path = write_csv(tmp_path / "devices.csv", rows)
    assert run(tmp_path, "import", str(path)) == 2
    err = capsys.readouterr().err
    assert "line 3: f_nwk_s_int_key" in err
    assert "line 4: mac_version" in err
    assert f"line 5: dev_eui: {devices[0].eui_hex} also on line 2" in err
    assert "nothing imported" in err
    assert "zz" * 16 not in err
    assert not (tmp_path / "keys.sqlite").exists()


def test_bad_json_rows_are_reported_by_line(
    tmp_path: Path, devices: list[Device], capsys: pytest.CaptureFixture[str]
) -> None:
    missing_addr = devices[1].row()
    del missing_addr["dev_addr"]
    text = json.dumps([devices[0].row(), missing_addr, "not an object"], indent=2)
    path = tmp_path / "devices.json"
    path.write_text(text)
    assert run(tmp_path, "import", str(path)) == 2
    err = capsys.readouterr().err
    second_line = text.splitlines().index("  {", 2) + 1  # where the second object starts
    assert f"line {second_line}: dev_addr" in err
    assert f"line {len(text.splitlines()) - 1}: row: must be an object" in err
    path.write_text('[{"dev_eui": ')
    assert run(tmp_path, "import", str(path)) == 2
    assert "line 1: json" in capsys.readouterr().err


def test_remove(tmp_path: Path, devices: list[Device], capsys: pytest.CaptureFixture[str]) -> None:
    path = write_csv(tmp_path / "devices.csv", [d.row() for d in devices])
    run(tmp_path, "import", str(path))
    eui = devices[0].eui_hex.upper()
    assert run(tmp_path, "remove", eui) == 0
    assert run(tmp_path, "remove", eui) == 1
    assert run(tmp_path, "remove", "nothex") == 2
    remaining = {s.session.dev_eui for s in open_store(tmp_path).load().sessions}
    assert remaining == {devices[1].eui_hex, devices[2].eui_hex}


def test_list_without_a_store_and_with_a_wrong_key(
    tmp_path: Path, devices: list[Device], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(tmp_path, "list") == 1
    assert "no key store" in capsys.readouterr().err
    assert not (tmp_path / "master.key").exists()
    run(tmp_path, "import", str(write_csv(tmp_path / "d.csv", [devices[0].row()])))
    (tmp_path / "master.key").write_bytes(bytes(32))
    assert run(tmp_path, "list") == 1
    assert "does not open key store" in capsys.readouterr().err
