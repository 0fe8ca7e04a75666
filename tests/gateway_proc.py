"""Run ``lora-gateway run`` as a real subprocess, the way systemd runs it, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from chirpstack_api.gw import gw_pb2
from paho.mqtt.enums import CallbackAPIVersion

GATEWAY_ID = "0016c001ff10a235"


def write_config(tmp: Path, mqtt_port: int, **extra: str) -> Path:
    """A config for the emulator backend with all files under ``tmp``."""
    sections = {
        "gateway": f'id = "{GATEWAY_ID}"\nstatus_socket = "status.sock"',
        "concentrator": 'backend = "emulator"\nregion = "EU868"\npoll_interval_s = 0.005',
        "concentrator.emulator": 'inject_socket = "inject.sock"',
        "mqtt": f'server = "mqtt://127.0.0.1:{mqtt_port}"\ntopic_prefix = "eu868"\n'
                'keepalive_s = 5\nstats_interval_s = 5\nmax_inflight = 200',
        "buffer": 'path = "buffer.sqlite"\ncommit_interval_s = 0.5\ndrain_rate_per_s = 0',
        "keys": 'store = "keys.sqlite"\nkey_file = "master.key"',
        "log": 'level = "info"\nformat = "keyvalue"',
    }
    for key, value in extra.items():  # later lines replace earlier ones with the same key
        section = key.replace("__", ".")
        lines = {line.split("=")[0].strip(): line
                 for line in sections.get(section, "").splitlines() + value.splitlines()
                 if line.strip()}
        sections[section] = "\n".join(lines.values())
    path = tmp / "gateway.toml"
    path.write_text("".join(f"[{name}]\n{body}\n\n" for name, body in sections.items()))
    return path


class GatewayProcess:
    """A ``lora-gateway run -c CONFIG`` child; its log goes to ``log_path``."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.log_path = config.parent / "gateway.log"
        self.inject_socket = config.parent / "inject.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 20.0) -> None:
        if self.inject_socket.exists():
            self.inject_socket.unlink()
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "-c", str(self.config)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        wait_for(lambda: self.inject_socket.exists() or self.proc.poll() is not None, timeout_s,
                 "gateway inject socket")
        if self.proc.poll() is not None:
            raise RuntimeError(f"gateway exited early:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: signal.Signals, timeout_s: float = 30.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout_s)
        self.proc = None
        return code

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def wait_for(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")


class UplinkCollector:
    """A network-server stand-in: a persistent-session QoS 1 subscriber to ``event/up``.

    The session survives broker restarts when the broker is persistent, so frames the
    gateway publishes right after a restart are queued for it, not lost in a race.
    """

    def __init__(self, port: int, topic: str = "eu868/gateway/+/event/up") -> None:
        self.frames: list[gw_pb2.UplinkFrame] = []
        self._lock = threading.Lock()
        self._topic = topic
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="ns-stand-in",
                                  clean_session=False)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect_async("127.0.0.1", port, keepalive=5)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            raise TimeoutError("collector did not subscribe")

    def _on_connect(self, client: mqtt.Client, *_: object) -> None:
        client.subscribe(self._topic, qos=1)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        frame = gw_pb2.UplinkFrame()
        frame.ParseFromString(msg.payload)
        with self._lock:
            self.frames.append(frame)

    def unique_payloads(self) -> set[bytes]:
        with self._lock:
            return {f.phy_payload for f in self.frames}

    def snapshot(self) -> list[gw_pb2.UplinkFrame]:
        with self._lock:
            return list(self.frames)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def stop_gracefully(gw: GatewayProcess, sig: signal.Signals = signal.SIGTERM) -> int:
    return gw.signal(sig)
