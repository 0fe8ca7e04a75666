"""Logging: rate limiting with suppressed counts, secret redaction, native journal output."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from gateway.config import load_config
from gateway.log import (
    REDACTED,
    RateLimiter,
    SecretRedactor,
    configure_logging,
    secrets_from_config,
)
from tests.support.fakes import FakeClock
from tests.test_journald import parse_datagram


def run_limiter(limiter: RateLimiter, event: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return dict(limiter(None, str(event.get("level", "info")), dict(event)))
    except structlog.DropEvent:
        return None


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def test_repeated_errors_pass_a_burst_then_report_how_many_were_held_back() -> None:
    clock = FakeClock()
    limiter = RateLimiter(burst=3, window_s=60.0, clock=clock)
    event = {"event": "mqtt_connect_failed", "level": "warning", "reason": "refused"}
    passed = [run_limiter(limiter, event) for _ in range(10)]
    assert sum(e is not None for e in passed) == 3
    clock.now += 60.0
    first_after = run_limiter(limiter, event)
    assert first_after is not None and first_after["suppressed"] == 7


def test_limits_are_per_event_and_key_field_and_never_touch_info_lines() -> None:
    limiter = RateLimiter(burst=1, window_s=60.0, clock=FakeClock())
    refused = {"event": "mqtt_connect_failed", "level": "error", "reason": "refused"}
    timeout = {**refused, "reason": "timeout"}
    assert run_limiter(limiter, refused) is not None
    assert run_limiter(limiter, refused) is None
    assert run_limiter(limiter, timeout) is not None  # another key: its own budget
    info = {"event": "backhaul_up", "level": "info"}
    assert all(run_limiter(limiter, info) is not None for _ in range(20))


def test_report_suppressed_logs_quiet_windows_once() -> None:
    clock = FakeClock()
    limiter = RateLimiter(burst=1, window_s=10.0, clock=clock)
    for _ in range(5):
        run_limiter(limiter, {"event": "rx_record_dropped", "level": "warning", "reason": "crc"})
    out = io.StringIO()
    configure_logging("info", "keyvalue", out)
    log = structlog.get_logger("t")
    assert limiter.report_suppressed(log) == 0  # window still open
    clock.now += 10.0
    assert limiter.report_suppressed(log) == 1
    assert limiter.report_suppressed(log) == 0
    assert "suppressed_event=rx_record_dropped suppressed=4" in out.getvalue()


def test_secret_keys_and_known_secret_values_are_redacted() -> None:
    redact = SecretRedactor(["s3cr3t-pass", "2b7e151628aed2a6abf7158809cf4f3c"])
    event = redact(None, "info", {
        "event": "x", "password": "whatever", "nwk_s_key": "00" * 16,
        "error": "auth failed for s3cr3t-pass", "dump": {"k": "2B7E151628AED2A6ABF7158809CF4F3C"},
        "count": 3,
    })
    assert event["password"] == REDACTED and event["nwk_s_key"] == REDACTED
    assert event["error"] == f"auth failed for {REDACTED}"
    assert "2B7E" not in str(event["dump"])
    assert event["count"] == 3


def test_journal_format_sends_structured_fields(tmp_path: Path) -> None:
    path = tmp_path / "journal.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        configure_logging("info", "journal", io.StringIO(), journal_socket=path,
                          secrets=["hunter22"])
        structlog.get_logger("t").warning("uplink_dropped", dev_addr="26011f2a", fcnt=12,
                                          frequency=868100000, reason="mic",
                                          detail="token hunter22")
        fields = parse_datagram(sock.recv(65536))
    assert fields["DEVADDR"] == b"26011F2A"
    assert fields["FCNT"] == b"12" and fields["FREQ"] == b"868100000"
    assert fields["REASON"] == b"mic" and fields["PRIORITY"] == b"4"
    assert fields["SYSLOG_IDENTIFIER"] == b"lora-gateway"
    assert b"hunter22" not in b"".join(fields.values())


def test_journal_unreachable_falls_back_to_the_stream(tmp_path: Path) -> None:
    out = io.StringIO()
    configure_logging("info", "journal", out, journal_socket=tmp_path / "none.sock")
    structlog.get_logger("t").info("concentrator_started", backend="emulator")
    assert out.getvalue() == "concentrator_started backend=emulator\n"


def test_auto_format_picks_the_journal_when_stderr_is_the_journal_stream(tmp_path: Path) -> None:
    path = tmp_path / "journal.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        st = os.fstat(2)
        configure_logging("info", "auto", environ={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"},
                          journal_socket=path)
        structlog.get_logger("t").info("clock_synchronised")
        assert parse_datagram(sock.recv(65536))["EVENT"] == b"clock_synchronised"


def test_running_gateway_never_logs_its_secrets(tmp_path: Path) -> None:
    """Grep a real daemon's whole log (debug level) for the configured secrets."""
    password = "Pw-0123-secret-xyz"
    nwk, app = "2b7e151628aed2a6abf7158809cf4f3c", "000102030405060708090a0b0c0d0e0f"
    with socket.socket() as probe:  # a port nobody listens on: connection errors get logged
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "gateway.toml"
    config.write_text(f"""
[gateway]
id = "0016c001ff10a235"
[concentrator]
backend = "emulator"
[[concentrator.emulator.sensors]]
name = "meter"
dev_addr = "26011f2a"
nwk_s_key = "{nwk}"
app_s_key = "{app}"
interval_s = 0.05
[mqtt]
server = "mqtt://127.0.0.1:{port}"
username = "gw"
password = "{password}"
[buffer]
path = "buffer.sqlite"
[keys]
store = "keys.sqlite"
key_file = "master.key"
[log]
level = "debug"
format = "keyvalue"
""")
    assert secrets_from_config(load_config(config)) == [password, nwk, app]
    log_path = tmp_path / "gateway.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c", str(config)],
                                stdout=log_file, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and proc.poll() is None:
                text = log_path.read_text(errors="replace")
                if "gateway_running" in text and "mqtt_connect_failed" in text:
                    break
                time.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    text = log_path.read_text(errors="replace")
    assert "gateway_running" in text, text[-2000:]
    for secret in (password, nwk, app, nwk.upper(), app.upper()):
        assert secret not in text
