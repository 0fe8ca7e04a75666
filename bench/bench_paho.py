"""QoS 1 publish throughput to a local Mosquitto: bare paho vs. MqttLink on asyncio.

The first figure is the ceiling (paho's own network thread, nothing else); the
second is the same messages through ``MqttLink.publish`` driven by the event
loop with its in-flight window, which is what the buffer's drain runs on. Both
count a message only when its PUBACK has come back. Prints the median of runs.

    python bench/bench_paho.py --count 20000 --size 64 --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from packet_forwarder.mqtt_link import MqttLink, MqttSettings
from packet_forwarder.topics import Topics
from tests.support.broker import MosquittoBroker

TOPICS = Topics("bench", "0016c001ff10a235")


def bare_paho(port: int, count: int, payload: bytes, inflight: int) -> float:
    """Messages per second, paho with its network thread and in-flight limit."""
    done = threading.Event()
    acked = 0

    def on_publish(*_: object) -> None:
        nonlocal acked
        acked += 1
        if acked == count:
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-paho",
                         protocol=MQTTProtocolVersion.MQTTv5)
    client.max_inflight_messages_set(inflight)
    client.on_publish = on_publish
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    try:
        start = time.perf_counter()
        for _ in range(count):
            client.publish(TOPICS.event("up"), payload, qos=1)
        if not done.wait(300):
            raise TimeoutError(f"only {acked}/{count} acknowledged")
        return count / (time.perf_counter() - start)
    finally:
        client.disconnect()
        client.loop_stop()


async def via_link(url: str, count: int, payload: bytes, inflight: int) -> float:
    """Messages per second through MqttLink, refilling the window on each ready signal."""
    link = MqttLink(MqttSettings(server=url, max_inflight=inflight, client_id="bench-link"),
                    TOPICS, on_command=lambda n, p: None)
    finished = asyncio.Event()
    state = {"sent": 0, "acked": 0}

    def on_result(ok: bool) -> None:
        if not ok:
            raise RuntimeError("publish failed during the benchmark")
        state["acked"] += 1
        if state["acked"] == count:
            finished.set()

    def fill() -> None:
        while state["sent"] < count and link.publish(TOPICS.event("up"), payload,
                                                     on_result=on_result):
            state["sent"] += 1

    ready = asyncio.Event()
    link.add_ready_listener(ready.set)
    task = asyncio.create_task(link.run())
    await asyncio.wait_for(ready.wait(), 10)
    link.add_ready_listener(fill)
    start = time.perf_counter()
    fill()
    await asyncio.wait_for(finished.wait(), 300)
    rate = count / (time.perf_counter() - start)
    await link.stop()
    await task
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=20_000)
    ap.add_argument("--size", type=int, default=64, help="payload bytes")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--inflight", type=int, default=100)
    args = ap.parse_args()
    payload = bytes(range(256)) * (args.size // 256) + bytes(args.size % 256)
    with tempfile.TemporaryDirectory() as tmp, MosquittoBroker(Path(tmp)) as broker:
        paho_rates = [bare_paho(broker.port, args.count, payload, args.inflight)
                      for _ in range(args.runs)]
        link_rates = [asyncio.run(via_link(broker.url, args.count, payload, args.inflight))
                      for _ in range(args.runs)]
    print(f"QoS 1, {args.count} x {args.size} B, in-flight {args.inflight}, "
          f"median of {args.runs} runs")
    print(f"bare paho (network thread): {statistics.median(paho_rates):10.0f} msgs/s")
    print(f"MqttLink (asyncio loop):    {statistics.median(link_rates):10.0f} msgs/s")


if __name__ == "__main__":
    main()
