"""sd_notify datagrams, the radio-progress watchdog, and the unit files themselves."""

from __future__ import annotations

import asyncio
import configparser
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.sd_notify import Notifier, Watchdog, watchdog_interval_s
from tests.support.fakes import FakeClock

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "lora-gateway.service"


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    yield str(path), sock
    sock.close()


def test_ready_status_watchdog_and_stopping_datagrams(
        notify_socket: tuple[str, socket.socket]) -> None:
    path, sock = notify_socket
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path})
    assert notifier.ready("concentrator running, store open")
    assert sock.recv(4096) == b"READY=1\nSTATUS=concentrator running, store open\n"
    notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1\n"
    notifier.status("backhaul down\nfor 3 s")  # a newline would start a bogus field
    assert sock.recv(4096) == b"STATUS=backhaul down for 3 s\n"
    notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1\nSTATUS=stopping\n"
    notifier.close()


def test_abstract_namespace_socket() -> None:
    name = f"lora-gateway-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        assert Notifier(f"@{name}").watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1\n"


def test_without_notify_socket_everything_is_a_silent_no_op() -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    assert not notifier.ready("x")
    assert not Notifier("relative/path").enabled


def test_watchdog_interval_honours_watchdog_pid() -> None:
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid=2) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval_s({}) is None


def test_watchdog_is_petted_only_while_the_radio_makes_progress(
        notify_socket: tuple[str, socket.socket]) -> None:
    path, sock = notify_socket
    clock = FakeClock(50.0)
    dog = Watchdog(Notifier(path), 30.0, clock=clock)
    assert dog.stall_after_s == 15.0
    assert dog.check()
    assert sock.recv(4096) == b"WATCHDOG=1\n"
    clock.now += 20.0  # the radio loop has not polled for 20 s: hung SPI
    assert not dog.check() and dog.stalled
    dog.radio_alive()
    assert dog.check() and not dog.stalled
    assert not dog.check(is_healthy=lambda: False)
    assert dog.pets == 2


def test_watchdog_run_pets_periodically_and_returns_without_a_watchdog(
        notify_socket: tuple[str, socket.socket]) -> None:
    path, sock = notify_socket

    async def scenario() -> None:
        await Watchdog(Notifier(path), None).run()  # no WatchdogSec: returns at once
        dog = Watchdog(Notifier(path), 0.02, stall_after_s=60.0)
        task = asyncio.create_task(dog.run())
        while dog.pets < 3:
            await asyncio.sleep(0.005)
        task.cancel()

    asyncio.run(scenario())
    assert [sock.recv(4096) for _ in range(3)] == [b"WATCHDOG=1\n"] * 3


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None,
                                       empty_lines_in_values=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(_merge_repeated(path.read_text()))
    return parser


def _merge_repeated(text: str) -> str:
    """systemd allows a key several times; join repeats so configparser can read the file."""
    out: list[str] = []
    seen: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("["):
            seen = {}
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#") and key in seen:
            out[seen[key]] += " " + value
            continue
        if sep and not line.startswith("#"):
            seen[key] = len(out)
        out.append(line)
    return "\n".join(out) + "\n"


def test_unit_declares_notify_watchdog_restart_and_hardening() -> None:
    svc = _unit(UNIT)["Service"]
    assert svc["Type"] == "notify" and svc["NotifyAccess"] == "main"
    assert int(svc["WatchdogSec"]) > 0
    assert svc["Restart"] == "on-failure"
    assert svc["User"] == "lora-gateway"
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "CapabilityBoundingSet": "",
                       "SocketBindDeny": "any", "DevicePolicy": "closed"}.items():
        assert svc[key] == value, key
    assert set(svc["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert svc["SystemCallFilter"].startswith("@system-service")
    assert "/dev/spidev0.0 rw" in svc["DeviceAllow"]
    assert svc["StateDirectory"] == "lora-gateway"


def test_unit_lets_the_admin_group_reach_the_status_socket_without_chown() -> None:
    svc = _unit(UNIT)["Service"]
    # setgid folder of the admin group: the socket inherits the group, no chown needed
    assert svc["ExecStartPre"] == ("+/usr/bin/install -d -m 2750 -o lora-gateway "
                                   "-g lora-gateway-admin /run/lora-gateway")
    assert "RuntimeDirectory" not in svc  # it would give the folder back to Group=
    assert svc["ReadWritePaths"] == "/run/lora-gateway"
    assert "~@privileged" in svc["SystemCallFilter"]  # chown stays forbidden to the daemon
    tmpfiles = (REPO / "systemd" / "lora-gateway.tmpfiles").read_text().splitlines()
    assert "d /run/lora-gateway 2750 lora-gateway lora-gateway-admin -" in tmpfiles


def test_unit_allows_i2c_and_usb_concentrators_and_stops_on_start_faults() -> None:
    svc = _unit(UNIT)["Service"]
    for device in ("/dev/spidev0.1 rw", "/dev/i2c-1 rw", "char-ttyACM rw", "char-ttyUSB rw"):
        assert device in svc["DeviceAllow"], device
    assert svc["RestartPreventExitStatus"].split() == ["78"]


def test_sysusers_gives_only_the_device_groups_and_the_admin_group() -> None:
    lines = [line.split() for line in (REPO / "systemd" / "lora-gateway.sysusers").read_text()
             .splitlines() if line and not line.startswith("#")]
    groups = {fields[2] for fields in lines if fields[0] == "m"}
    assert groups == {"spi", "gpio", "i2c", "dialout", "lora-gateway-admin"}
    assert lines[0][:2] == ["u", "lora-gateway"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None
                    or not Path("/lib/systemd/system/sysinit.target").exists(),
                    reason="systemd-analyze and systemd's own units are needed "
                           "(.ci/package-check runs it in a Debian chroot)")
def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    root = tmp_path / "root"
    units = root / "lib/systemd/system"
    shutil.copytree("/lib/systemd/system", units, symlinks=True)
    for name in ("lora-gateway.service", "lora-gateway-import.service"):
        shutil.copy(REPO / "systemd" / name, units / name)
    for exe in ("usr/bin/lora-gateway", "usr/lib/lora-gateway/import-boot-config",
                "usr/bin/install"):
        (root / exe).parent.mkdir(parents=True, exist_ok=True)
        (root / exe).write_text("#!/bin/sh\n")
        (root / exe).chmod(0o755)
    result = subprocess.run(["systemd-analyze", "verify", f"--root={root}",
                             "lora-gateway.service", "lora-gateway-import.service"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
