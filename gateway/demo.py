"""``lora-gateway demo``: the whole gateway on one machine, no radio and no server needed.

It runs the embedded demo configuration (emulated SX1302 with virtual sensors),
starts a loopback Mosquitto when the binary exists, and prints every uplink the
broker receives, decoded, so a newcomer sees frames flow end to end. Without
Mosquitto it says so and the gateway buffers to SQLite, as it would in a
building whose line is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import structlog
from chirpstack_api.gw import gw_pb2
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config import Config, demo_config_text, load_config_text
from gateway.daemon import Daemon
from gateway.local_broker import LocalBroker, find_mosquitto

log = structlog.get_logger(__name__)


def demo_config(state_dir: Path, mqtt_url: str | None) -> Config:
    config = load_config_text(demo_config_text(), source="(embedded demo)", base_dir=state_dir)
    if mqtt_url is not None:
        config = dataclasses.replace(config, mqtt=dataclasses.replace(config.mqtt, server=mqtt_url))
    return config


def describe_uplink(payload: bytes) -> str:
    """One human line for an ``event/up`` message (protobuf)."""
    frame = gw_pb2.UplinkFrame()
    frame.ParseFromString(payload)
    phy = frame.phy_payload
    lora = frame.tx_info.modulation.lora
    who = phy[1:5][::-1].hex() if len(phy) >= 12 and phy[0] >> 5 in (2, 4) else "-"
    fcnt = int.from_bytes(phy[6:8], "little") if who != "-" else 0
    held = frame.rx_info.metadata.get("hold_ms")
    return (f"uplink devaddr={who} fcnt={fcnt} {frame.tx_info.frequency / 1e6:.1f}MHz "
            f"SF{lora.spreading_factor} rssi={frame.rx_info.rssi} snr={frame.rx_info.snr:.1f} "
            f"bytes={len(phy)}" + (f" buffered_for={held}ms" if held else ""))


@contextlib.contextmanager
def _watch_broker(url_port: int, topic: str) -> Iterator[None]:
    """Subscribe to the gateway's uplinks and print them (a stand-in network server)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="demo-watcher")
    lock = threading.Lock()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with lock:
            print(f"[broker] {describe_uplink(bytes(msg.payload))}", flush=True)

    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    client.connect_async("127.0.0.1", url_port)
    client.loop_start()
    try:
        yield
    finally:
        client.loop_stop()
        client.disconnect()


def run_demo(duration_s: float | None = None, state_dir: Path | None = None) -> int:
    work = state_dir or Path(tempfile.mkdtemp(prefix="lora-gateway-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    broker: LocalBroker | None = None
    if find_mosquitto():
        broker = LocalBroker(work / "broker")
        broker.start()
        log.info("demo_broker_started", url=broker.url)
    else:
        log.warning("demo_no_broker", detail="mosquitto is not installed: the gateway will "
                    "buffer every frame in SQLite until a broker answers on 127.0.0.1:1883")
    config = demo_config(work, broker.url if broker else None)
    log.info("demo_state_dir", path=str(work), inject_socket=str(
        config.concentrator.emulator.inject_socket))
    topic = f"{config.mqtt.topic_prefix}/gateway/+/event/up"
    try:
        with _watch_broker(broker.port if broker else 1883, topic):
            asyncio.run(_run_for(Daemon(config), duration_s))
    except KeyboardInterrupt:
        pass
    finally:
        if broker:
            broker.stop()
    return 0


async def _run_for(daemon: Daemon, duration_s: float | None) -> None:
    if duration_s is not None:
        asyncio.get_running_loop().call_later(duration_s, daemon.request_stop)
    await daemon.run()
