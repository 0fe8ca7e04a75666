"""The local status socket: one JSON request, one JSON answer, private permissions; the CLI."""

from __future__ import annotations

import argparse
import asyncio
import grp
import json
import os
import socket
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from gateway import status_server
from gateway.ops_cli import add_ops_commands, format_status
from gateway.status_server import StatusError, StatusServer, query_status

SNAPSHOT = {
    "version": "0.1.0", "gateway_id": "0016c001ff10a235", "uptime_s": 3725.0,
    "concentrator": {"state": "running"},
    "backhaul": {"state": "down", "since_s": 95.0, "server": "mqtts://broker:8883"},
    "last_uplink": {"age_s": 2.5, "dev_addr": "26011f2a", "fcnt": 41, "frequency": 868100000},
    "last_downlink": None,
    "buffer": {"depth": 120, "oldest_age_s": 94.0, "storage_ok": True},
    "drops": {"crc": 4, "mic": 1},
    "duty_cycle": {"used_percent": 0.35},
}


def serve(path: Path, snapshot: Callable[[], Mapping[str, Any]],
          client: Callable[[], Any]) -> Any:
    """Run the server on an event loop while ``client`` (blocking) runs in a thread."""
    async def scenario() -> Any:
        server = StatusServer(path, snapshot, group=None)
        await server.start()
        try:
            return await asyncio.to_thread(client)
        finally:
            await server.close()
    return asyncio.run(scenario())


def raw_request(path: Path, data: bytes) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(data)
        answer: dict[str, Any] = json.loads(sock.makefile("rb").readline())
        return answer


def test_status_round_trip_and_socket_is_private(tmp_path: Path) -> None:
    path = tmp_path / "status.sock"

    def client() -> tuple[dict[str, Any], int]:
        return query_status(path), stat.S_IMODE(path.stat().st_mode)

    status, mode = serve(path, lambda: SNAPSHOT, client)
    assert status == SNAPSHOT
    assert mode == 0o660
    assert not path.exists()  # removed on close


def test_bad_requests_get_an_error_answer_and_the_server_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "status.sock"

    def client() -> list[dict[str, Any]]:
        requests = [b"not json\n", b'{"command": "reboot"}\n', b"x" * 10000 + b"\n",
                    b'{"command": "status"}\n']
        return [raw_request(path, data) for data in requests]

    answers = serve(path, lambda: {"uptime_s": 1.0}, client)
    assert [a["ok"] for a in answers] == [False, False, False, True]
    assert answers[3]["status"] == {"uptime_s": 1.0}


def test_a_failing_snapshot_is_reported_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "status.sock"

    def broken() -> Mapping[str, Any]:
        raise RuntimeError("bug")

    def client() -> str:
        with pytest.raises(StatusError) as excinfo:
            query_status(path)
        return str(excinfo.value)

    assert "snapshot failed: RuntimeError" in serve(path, broken, client)


def test_client_explains_a_missing_or_dead_socket(tmp_path: Path) -> None:
    with pytest.raises(StatusError, match="is lora-gateway running"):
        query_status(tmp_path / "absent.sock")
    dead = tmp_path / "dead.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(dead))  # bound, never listening: what a crashed daemon leaves behind
    with pytest.raises(StatusError, match="not running"):
        query_status(dead)


def test_stale_socket_file_is_replaced_on_start(tmp_path: Path) -> None:
    path = tmp_path / "status.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))
    assert serve(path, lambda: {"ok": 1}, lambda: query_status(path)) == {"ok": 1}


def test_human_format_names_every_field_a_maintainer_asks_for() -> None:
    text = format_status(SNAPSHOT)
    assert "up 62 min 5 s" in text
    assert "backhaul     down for 95 s  mqtts://broker:8883" in text
    assert "dev_addr=26011f2a fcnt=41" in text
    assert "last downlink none yet" in text
    assert "120 frames waiting, oldest 94 s old" in text
    assert "crc=4, mic=1" in text
    assert "0.35 %" in text
    assert "unknown" in format_status({})  # an older daemon's sparse answer still prints


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lora-gateway")
    add_ops_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def test_status_command_prints_json_or_text(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "status.sock"

    def client() -> list[int]:
        codes = []
        for extra in (["--json"], []):
            args = _parser().parse_args(["status", "--socket", str(path), *extra])
            codes.append(args.func(args))
        return codes

    assert serve(path, lambda: SNAPSHOT, client) == [0, 0]
    out = capsys.readouterr().out
    start = out.index("{\n")
    end = out.index("\n}\n", start) + 2
    assert json.loads(out[start:end]) == json.loads(json.dumps(SNAPSHOT))
    assert "backhaul     down" in out
    args = _parser().parse_args(["status", "--socket", str(tmp_path / "none.sock")])
    assert args.func(args) == 1


def _other_group() -> grp.struct_group | None:
    """A group that is not this process's own, to tell inheritance from the default."""
    for group in grp.getgrall():
        if group.gr_gid != os.getegid():
            return group
    return None


def test_socket_takes_the_setgid_folders_group_without_any_chown(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    group = _other_group()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    try:
        assert group is not None
        os.chown(run_dir, -1, group.gr_gid)
    except (AssertionError, PermissionError):
        pytest.skip("needs a second group this user may give a folder to")
    run_dir.chmod(0o2750)  # what RuntimeDirectoryMode= and the unit's chgrp make

    def forbidden(*_args: object) -> None:
        raise PermissionError(1, "Operation not permitted")  # the unit's system-call filter

    monkeypatch.setattr(status_server.os, "chown", forbidden)
    path = run_dir / "status.sock"

    async def scenario() -> int:
        server = StatusServer(path, lambda: SNAPSHOT, group=group.gr_name)
        await server.start()
        try:
            return path.stat().st_gid
        finally:
            await server.close()

    assert asyncio.run(scenario()) == group.gr_gid


def test_text_output_reads_the_fields_the_daemon_sends() -> None:
    from gateway.status_fields import duty_cycle_use
    from packet_forwarder.downlink.duty_cycle import BandUsage

    daemon_snapshot = {
        "gateway_id": "0016c001ff10a235", "uptime_s": 12.0,
        "backhaul": {"state": "up", "since_s": 10.0, "server": "mqtt://b:1883"},
        "last_uplink": {"at_unix": 1_000_000, "device": "26011f2a", "frequency": 868300000,
                        "rssi": -57},
        "counts": {"received": 12, "forwarded": 11},
        "downlink": {"received": 2, "emitted": 1, "queued": 1, "statuses": {}},
        "buffer": {"depth": 3, "oldest_age_s": 4.0, "storage_ok": True},
        "duty_cycle": duty_cycle_use([BandUsage("g1", 868_000_000, 868_600_000, 36_000_000,
                                                360_000),
                                      BandUsage("g3", 869_400_000, 869_650_000, 360_000_000,
                                                0)]),
    }
    text = format_status(daemon_snapshot, now=1_000_042.0)
    uplink = next(line for line in text.splitlines() if line.startswith("last uplink"))
    assert "never" not in uplink
    assert uplink == "last uplink  42 s ago device=26011f2a frequency=868300000 rssi=-57"
    assert "12 received, 11 forwarded" in text
    assert "downlinks    2 received, 1 emitted, 1 queued" in text
    assert "last downlink" not in text  # the daemon sends no such field: no "none yet" line
    assert "3 frames waiting" in text
    assert "1.00 % of the allowed airtime" in text
    assert "backhaul     up for 10 s  mqtt://b:1883" in text
