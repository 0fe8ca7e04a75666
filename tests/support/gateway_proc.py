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


class NetworkServerStandIn:
    """A network-server stand-in for downlink tests: sees uplinks and acks, sends commands.

    Subscribes to every ``event/*`` of the gateway and to its ``state/conn``; the
    gateway subscribes to its commands before it publishes ONLINE, so once
    :meth:`wait_online` returns, a published command reaches it.
    """

    def __init__(self, port: int, gateway_id: str = GATEWAY_ID, prefix: str = "eu868") -> None:
        self.base = f"{prefix}/gateway/{gateway_id}"
        self.uplinks: list[gw_pb2.UplinkFrame] = []
        self.acks: list[gw_pb2.DownlinkTxAck] = []
        self.stats: list[gw_pb2.GatewayStats] = []
        self.online = threading.Event()
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="ns-downlink")
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect_async("127.0.0.1", port, keepalive=5)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, *_: object) -> None:
        client.subscribe([(f"{self.base}/event/+", 1), (f"{self.base}/state/conn", 1)])

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        from packet_forwarder.chirpstack import unmarshal

        kind = msg.topic.rsplit("/", 1)[-1]
        with self._lock:
            if kind == "up":
                self.uplinks.append(unmarshal(msg.payload, gw_pb2.UplinkFrame))
            elif kind == "ack":
                self.acks.append(unmarshal(msg.payload, gw_pb2.DownlinkTxAck))
            elif kind == "stats":
                self.stats.append(unmarshal(msg.payload, gw_pb2.GatewayStats))
            elif kind == "conn":
                state = unmarshal(msg.payload, gw_pb2.ConnState)
                if state.state == gw_pb2.ConnState.State.ONLINE:
                    self.online.set()

    def wait_online(self, timeout_s: float = 20.0) -> None:
        if not self.online.wait(timeout_s):
            raise TimeoutError("the gateway did not come ONLINE")

    def command(self, name: str, payload: bytes) -> None:
        self.client.publish(f"{self.base}/command/{name}", payload, qos=1).wait_for_publish(5)

    def ack_for(self, downlink_id: int) -> gw_pb2.DownlinkTxAck | None:
        with self._lock:
            return next((a for a in self.acks if a.downlink_id == downlink_id), None)

    def wait_ack(self, downlink_id: int, timeout_s: float = 10.0) -> gw_pb2.DownlinkTxAck:
        found: list[gw_pb2.DownlinkTxAck] = []

        def arrived() -> bool:
            ack = self.ack_for(downlink_id)
            if ack is not None:
                found.append(ack)
            return ack is not None

        wait_for(arrived, timeout_s, f"the ack of downlink {downlink_id}")
        return found[0]

    def wait_uplink(self, phy_payload: bytes, timeout_s: float = 10.0) -> gw_pb2.UplinkFrame:
        def find() -> gw_pb2.UplinkFrame | None:
            with self._lock:
                return next((u for u in self.uplinks if u.phy_payload == phy_payload), None)

        wait_for(lambda: find() is not None, timeout_s, "the uplink")
        frame = find()
        assert frame is not None
        return frame

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def downlink_frame(downlink_id: int, *items: dict[str, object],
                   gateway_id: str = GATEWAY_ID) -> gw_pb2.DownlinkFrame:
    """A ``DownlinkFrame``; each item: payload, frequency, power, sf, and delay_us+context
    (class A) or no delay (class C, "immediately")."""
    frame = gw_pb2.DownlinkFrame(downlink_id=downlink_id, gateway_id=gateway_id)
    for spec in items:
        item = frame.items.add(phy_payload=bytes(spec.get("payload", b"\x60" + bytes(12))))
        tx = item.tx_info
        tx.frequency = int(spec.get("frequency", 869_525_000))
        tx.power = int(spec.get("power", 14))
        tx.context = bytes(spec.get("context", b""))
        lora = tx.modulation.lora
        lora.spreading_factor = int(spec.get("sf", 9))
        lora.bandwidth = 125_000
        lora.code_rate = gw_pb2.CodeRate.CR_4_5
        lora.polarization_inversion = True
        if "delay_us" in spec:
            tx.timing.delay.delay.FromMicroseconds(int(spec["delay_us"]))
        else:
            tx.timing.immediately.SetInParent()
    return frame
