"""The emulator's inject socket: validation, one log line per bad datagram, no loss under load."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from gateway.sim.inject import (
    InjectError,
    InjectRequest,
    InjectServer,
    parse_inject_datagram,
    send_inject,
)

GOOD = {"phy_payload": "40011f2a2600010001a1b2c3d4", "frequency": 868100000, "sf": 7,
        "bw": 125000, "cr": "4/5", "rssi": -57, "snr": 9.5}


def test_good_datagram() -> None:
    req = parse_inject_datagram(json.dumps(GOOD).encode())
    assert req.phy_payload == bytes.fromhex(GOOD["phy_payload"])
    assert (req.frequency_hz, req.sf, req.bw_hz, req.cr) == (868100000, 7, 125000, "4/5")
    assert (req.rssi_dbm, req.snr_db, req.crc_ok) == (-57.0, 9.5, True)


@pytest.mark.parametrize(
    ("patch", "reason"),
    [
        ({"phy_payload": "xyz"}, "bad_field"),
        ({"phy_payload": ""}, "bad_field"),
        ({"frequency": "868.1"}, "bad_field"),
        ({"sf": 13}, "bad_field"),
        ({"bw": 200000}, "bad_field"),
        ({"cr": "5/4"}, "bad_field"),
        ({"crc_ok": "no"}, "bad_field"),
        ({"colour": "red"}, "unknown_field"),
        ({"rssi": None}, "missing_field"),
    ],
)
def test_bad_fields_are_named(patch: dict[str, object], reason: str) -> None:
    with pytest.raises(InjectError) as info:
        parse_inject_datagram(json.dumps({**GOOD, **patch}).encode())
    assert info.value.reason == reason


@given(st.binary(max_size=300))
def test_random_bytes_only_raise_inject_error(data: bytes) -> None:
    with contextlib.suppress(InjectError):
        parse_inject_datagram(data)


def test_server_logs_one_line_per_garbage_datagram_and_keeps_going(tmp_path: Path) -> None:
    got: list[InjectRequest] = []

    async def scenario() -> None:
        server = InjectServer(tmp_path / "inject.sock", lambda r: got.append(r) is None)
        await server.start()
        send_inject(server.path, b"\xff\x00garbage")
        send_inject(server.path, GOOD)
        for _ in range(100):
            await asyncio.sleep(0.01)
            if got:
                break
        server.close()
        assert server.rejected == {"not_json": 1}

    with capture_logs() as logs:
        asyncio.run(scenario())
    assert len(got) == 1
    rejected = [e for e in logs if e["event"] == "inject_rejected"]
    assert len(rejected) == 1 and rejected[0]["reason"] == "not_json"


def test_server_holds_packets_while_the_chip_is_full_and_loses_none(tmp_path: Path) -> None:
    accepted: list[int] = []
    room = {"free": 3}

    def on_packet(req: InjectRequest) -> bool:
        if room["free"] == 0:
            return False
        room["free"] -= 1
        accepted.append(req.frequency_hz)
        return True

    async def scenario() -> None:
        server = InjectServer(tmp_path / "inject.sock", on_packet, max_pending=4)
        await server.start()
        def send_all() -> None:  # a separate sender: it may block while the server waits
            for i in range(20):
                send_inject(server.path, {**GOOD, "frequency": 868_000_000 + i})

        sender = asyncio.get_running_loop().run_in_executor(None, send_all)
        await asyncio.sleep(0.05)
        assert len(accepted) == 3  # the chip is full; the rest wait, unread or pending
        while len(accepted) < 20:
            room["free"] = 2  # the radio loop drained the chip
            server.resume()
            await asyncio.sleep(0.005)
        await sender
        server.close()

    asyncio.run(scenario())
    assert accepted == [868_000_000 + i for i in range(20)]
