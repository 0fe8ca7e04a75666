"""The one-line state changes a maintainer greps for: backhaul, disk, clock."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from gateway import radio_loop, service_hooks
from gateway.service_hooks import ServiceHooks


def hooks(tmp_path: Path, backlog: int = 7) -> ServiceHooks:
    def snapshot() -> Mapping[str, Any]:
        return {}

    return ServiceHooks(status_socket=tmp_path / "status.sock", snapshot=snapshot,
                        backlog=lambda: backlog, disk_path=tmp_path / "buffer.sqlite",
                        environ={})


def test_backhaul_lines_carry_outage_length_and_backlog(tmp_path: Path) -> None:
    h = hooks(tmp_path)
    with capture_logs() as logs:
        h.backhaul_changed(True)   # first connect: no "up after outage" line
        h.backhaul_changed(False)
        h.backhaul_changed(False)  # repeated state: no second line
        h.backhaul_changed(True)
    events = [e["event"] for e in logs]
    assert events == ["backhaul_down", "backhaul_up"]
    assert logs[0]["backlog"] == 7 and logs[1]["backlog"] == 7
    assert logs[1]["outage_s"] >= 0
    assert h.backhaul_state()["state"] == "up"


def test_our_own_shutdown_is_not_logged_as_a_backhaul_outage(tmp_path: Path) -> None:
    h = hooks(tmp_path)
    h.backhaul_changed(True)

    async def shut_down() -> None:
        await h.start(is_healthy=lambda: True)
        await h.close()
        h.backhaul_changed(False)  # the link closes after the hooks on shutdown

    with capture_logs() as logs:
        asyncio.run(shut_down())
    assert [e["event"] for e in logs if e["event"].startswith("backhaul")] == []
    assert h.backhaul_state()["state"] == "down"


def test_disk_nearly_full_is_said_once_and_recovery_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = hooks(tmp_path)
    with capture_logs() as logs:
        monkeypatch.setattr(service_hooks, "DISK_NEARLY_FULL_BYTES", 1 << 62)
        h.check_disk()
        h.check_disk()
        monkeypatch.setattr(service_hooks, "DISK_NEARLY_FULL_BYTES", 0)
        h.check_disk()
    assert [e["event"] for e in logs] == ["disk_nearly_full", "disk_space_recovered"]
    assert logs[0]["log_level"] == "warning"


def test_clock_synchronised_line_when_ntp_arrives(monkeypatch: pytest.MonkeyPatch) -> None:
    state = {"synced": False}
    monkeypatch.setattr(radio_loop, "clock_synchronised", lambda: state["synced"])
    loop = radio_loop.RadioLoop.__new__(radio_loop.RadioLoop)
    loop._synced, loop._synced_checked = False, 0.0
    with capture_logs() as logs:
        assert loop._clock_synced() is False
        state["synced"] = True
        loop._synced_checked = 0.0  # the next periodic check is due
        assert loop._clock_synced() is True
        loop._synced_checked = 0.0
        loop._clock_synced()
    assert [e["event"] for e in logs] == ["clock_synchronised"]
