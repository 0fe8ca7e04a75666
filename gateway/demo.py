"""``lora-gateway demo``: the whole gateway on one machine, no radio and no server needed.

It runs the embedded demo configuration (emulated SX1302 with virtual sensors),
starts a loopback Mosquitto when the binary exists, and prints every uplink the
broker receives, decoded, so a newcomer sees frames flow end to end. Without
Mosquitto (or with ``--no-broker``) it says once how to get one, prints each frame
as it is kept in the SQLite buffer, as the gateway would in a building whose line
is down, and ends with a summary that separates what a broker acknowledged from
what is still kept.
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
from gateway.log import configure_logging
from gateway.sim.local_broker import LocalBroker, find_mosquitto

log = structlog.get_logger(__name__)


NO_BROKER_HINT = ("no MQTT broker: every frame is kept in the SQLite buffer until one answers on "
                  "127.0.0.1:1883. To see frames reach a broker, install Mosquitto "
                  "(sudo apt-get install mosquitto) and run the demo again.")
QUIET_WITHOUT_BROKER = frozenset({"mqtt_connect_failed", "mqtt_reconnect_wait"})
"""Link events the demo has already explained once when it runs without a broker."""


def demo_config(state_dir: Path, mqtt_url: str | None) -> Config:
    """The embedded config, its files (and status socket) in ``state_dir``."""
    config = load_config_text(demo_config_text(), source="(embedded demo)", base_dir=state_dir)
    gateway = dataclasses.replace(config.gateway, status_socket=state_dir / "status.sock")
    config = dataclasses.replace(config, gateway=gateway)
    if mqtt_url is not None:
        config = dataclasses.replace(config, mqtt=dataclasses.replace(config.mqtt, server=mqtt_url))
    return config


def summary_line(summary: dict[str, int], buffer: Path) -> str:
    """The demo's last line: what a broker has, apart from what is still waiting on disk."""
    if not summary:
        return "[demo] the gateway did not start; see the error above"
    return (f"[demo] received {summary['received']} frames: delivered to the broker "
            f"{summary['delivered']}, kept in the buffer {summary['kept']} ({buffer})"
            + (f", dropped {summary['dropped']}" if summary.get("dropped") else ""))


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


def _print_kept(payload: bytes) -> None:
    print(f"[kept]   {describe_uplink(payload)} (in the buffer, waiting for a broker)",
          flush=True)


def run_demo(duration_s: float | None = None, state_dir: Path | None = None, *,
             start_broker: bool = True) -> int:
    work = state_dir or Path(tempfile.mkdtemp(prefix="lora-gateway-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    broker: LocalBroker | None = None
    if start_broker and find_mosquitto():
        configure_logging("info", "auto")
        broker = LocalBroker(work / "broker")
        broker.start()
        log.info("demo_broker_started", url=broker.url)
    else:
        configure_logging("info", "auto", drop_events=QUIET_WITHOUT_BROKER)
        print(f"[demo] {NO_BROKER_HINT}", flush=True)
    config = demo_config(work, broker.url if broker else None)
    log.info("demo_state_dir", path=str(work), inject_socket=str(
        config.concentrator.emulator.inject_socket))
    topic = f"{config.mqtt.topic_prefix}/gateway/+/event/up"
    daemon = Daemon(config, on_uplink=None if broker else _print_kept)
    try:
        with _watch_broker(broker.port if broker else 1883, topic):
            asyncio.run(_run_for(daemon, duration_s))
    except KeyboardInterrupt:
        pass
    finally:
        if broker:
            broker.stop()
    print(summary_line(daemon.summary, config.buffer.path), flush=True)
    return 0


async def _run_for(daemon: Daemon, duration_s: float | None) -> None:
    if duration_s is not None:
        asyncio.get_running_loop().call_later(duration_s, daemon.request_stop)
    await daemon.run()
