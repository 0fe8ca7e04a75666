"""Benchmark: MQTT receive → chip load, through the real daemon with the emulated SX1302.

Runs ``gateway.daemon.Daemon`` in this process against a real Mosquitto, sends
class C ("immediately") downlinks one at a time from an MQTT client, and times:

1. *due on arrival*: with ``immediate_lead_ms = 30`` (below the 40 ms load
   margin) each packet is due the moment it arrives, so the time from the
   daemon's ``command/down`` callback to the return of ``conc.send`` is the pure
   path cost: decode, checks, scheduling, ack publish, the hop to the radio
   thread, the SPI load. Target p99 ≤ 5 ms.
2. *load lateness*: with the default 80 ms lead, how long after the moment it
   became due (start − load margin, read from the chip's counter) each packet
   was loaded. It shows the due-timer at work (the poll interval is 10 ms).

Nothing is asserted; numbers are printed.

    python bench/bench_downlink_e2e.py [count]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.config import Config, load_config
from gateway.daemon import Daemon
from gateway.log import configure_logging
from gateway.sim.local_broker import LocalBroker
from hal.sx1302 import Sx1302Concentrator
from hal.types import TxPacket
from tests.support.gateway_proc import GATEWAY_ID, downlink_frame, write_config

received: dict[int, float] = {}
loaded: dict[bytes, tuple[float, int]] = {}
on_load: list[threading.Event] = [threading.Event()]


def instrument() -> None:
    """Timestamp the daemon's command callback and the driver's send (class-level wraps)."""
    on_command = Daemon._on_command
    send = Sx1302Concentrator.send

    def timed_command(self: Daemon, name: str, payload: bytes) -> None:
        if name == "down":
            received[len(received)] = time.perf_counter()
        on_command(self, name, payload)

    def timed_send(self: Sx1302Concentrator, packet: TxPacket) -> None:
        send(self, packet)
        now = time.perf_counter()
        loaded[packet.payload] = (now, packet.count_us - self.counter_us())
        on_load[0].set()

    Daemon._on_command = timed_command  # type: ignore[method-assign]
    Sx1302Concentrator.send = timed_send  # type: ignore[method-assign]


async def run(config: Config, port: int, count: int) -> list[tuple[float, int]]:
    """Send ``count`` downlinks one by one; returns (receive→load s, lead at load µs) each."""
    received.clear()
    loaded.clear()
    daemon = Daemon(config)
    task = asyncio.create_task(daemon.run())
    online = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-ns")
    client.on_message = lambda *_: online.set()
    client.connect("127.0.0.1", port)
    client.subscribe(f"eu868/gateway/{GATEWAY_ID}/state/conn")
    client.loop_start()
    await asyncio.to_thread(online.wait, 20)
    out = []
    for i in range(count):
        payload = b"\x60" + i.to_bytes(4, "big") + bytes(8)
        frame = downlink_frame(i + 1, {"payload": payload, "sf": 7})
        client.publish(f"eu868/gateway/{GATEWAY_ID}/command/down", frame.SerializeToString(),
                       qos=0)
        # Wait in a worker thread: polling from the loop would compete with the daemon.
        while payload not in loaded:
            await asyncio.to_thread(on_load[0].wait, 1.0)
            on_load[0].clear()
        t_load, lead = loaded[payload]
        out.append((t_load - received[i], lead))
        await asyncio.sleep(0.13)  # let it leave (≈41 ms on air) and the guard pass
    client.loop_stop()
    client.disconnect()
    daemon.request_stop()
    await task
    return out


def report(title: str, values_ms: list[float]) -> None:
    values = sorted(values_ms)
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    print(f"{title:<44} median {statistics.median(values):6.2f} ms   p99 {p99:6.2f} ms   "
          f"max {values[-1]:6.2f} ms   (n={len(values)})")


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 150
    configure_logging(level="warning", fmt="keyvalue")
    instrument()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        broker = LocalBroker(tmp / "broker")
        broker.start()
        try:
            base = {"concentrator": 'backend = "emulator"\npoll_interval_s = 0.01',
                    "log": 'level = "warning"'}
            due = load_config(write_config(tmp, broker.port, **base,
                                           downlink="immediate_lead_ms = 30"))
            first = asyncio.run(run(due, broker.port, count))
            report("MQTT receive → chip load (due on arrival)", [d * 1e3 for d, _ in first])
            (tmp / "buffer.sqlite").unlink(missing_ok=True)
            later = load_config(write_config(tmp, broker.port, **base))
            second = asyncio.run(run(later, broker.port, count))
            margin_us = later.downlink.load_margin_us
            report("load lateness after due (80 ms lead)",
                   [(margin_us - lead) / 1e3 for _, lead in second])
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
