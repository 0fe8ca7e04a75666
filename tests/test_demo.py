"""``lora-gateway demo`` as a newcomer runs it: with a broker, and with none at all."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

SUMMARY = re.compile(r"^\[demo\] received (\d+) frames: delivered to the broker (\d+), "
                     r"kept in the buffer (\d+) \((.+)\)")


def run_demo(tmp_path: Path, *extra: str, seconds: float = 7.0) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "demo", "--duration", str(seconds),
         "--state-dir", str(tmp_path / "demo"), *extra],
        capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return (proc.stdout + proc.stderr).splitlines()


@contextlib.contextmanager
def dead_broker_port() -> Iterator[bool]:
    """Hold 127.0.0.1:1883 with a listener that hangs up on every client (no MQTT there).

    Yields False when the port is already taken (a real broker may answer there)."""
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", 1883))
    except OSError:
        sock.close()
        yield False
        return
    sock.listen(16)
    sock.settimeout(0.2)
    stop = threading.Event()

    def refuse() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                client, _ = sock.accept()
                client.close()

    thread = threading.Thread(target=refuse, daemon=True)
    thread.start()
    try:
        yield True
    finally:
        stop.set()
        thread.join()
        sock.close()


def summary(lines: list[str]) -> tuple[int, int, int, str]:
    found = [m for m in map(SUMMARY.match, lines) if m]
    assert len(found) == 1, lines[-5:]
    received, delivered, kept, path = found[0].groups()
    return int(received), int(delivered), int(kept), path


def test_without_a_broker_each_frame_is_shown_kept_and_the_summary_is_honest(
        tmp_path: Path) -> None:
    with dead_broker_port() as nobody_there:
        lines = run_demo(tmp_path, "--no-broker")
    kept_lines = [ln for ln in lines if ln.startswith("[kept]")]
    hints = [ln for ln in lines if "install Mosquitto" in ln]
    received, delivered, kept, path = summary(lines)
    assert len(hints) == 1
    assert kept_lines and all("devaddr=260b1a0" in ln for ln in kept_lines)
    assert received == len(kept_lines) and delivered + kept == received
    if nobody_there:
        assert delivered == 0 and kept == received
        assert not [ln for ln in lines if ln.startswith("[broker]")]
    assert Path(path) == tmp_path / "demo" / "buffer.sqlite" and Path(path).is_file()
    assert not [ln for ln in lines if "status_socket_unavailable" in ln]
    assert not [ln for ln in lines if "mqtt_connect_failed" in ln or "reconnect_wait" in ln]


def test_with_mosquitto_frames_reach_the_broker_and_the_summary_says_so(
        tmp_path: Path, mosquitto_binary: str) -> None:
    lines = run_demo(tmp_path)
    seen = [ln for ln in lines if ln.startswith("[broker] uplink devaddr=260b1a0")]
    received, delivered, kept, _ = summary(lines)
    assert seen and delivered >= len(seen) - 1 and delivered + kept == received
    assert not [ln for ln in lines if ln.startswith("[kept]")]
    assert not [ln for ln in lines if "status_socket_unavailable" in ln]
