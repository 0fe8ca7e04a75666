"""How soon the gateway is back after the broker returns from an outage.

Real subprocesses: ``python -m gateway run`` on the emulator and Mosquitto, stopped
and started again on the same port. Outages of growing length (so a back-off has
time to grow: 3, 10, 30, 60 s by default, repeated ``--runs`` times) end with the
broker's start; the time counted is from the broker accepting connections again to
the gateway's ONLINE state message reaching a subscriber that was already
reconnected. Prints each sample, the median and the maximum, then one JSON line.
Asserts nothing. Target: median ≤ 2 s.

    python -m bench.bench_reconnect [--outages 3 10 30 60 --runs 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import paho.mqtt.client as mqtt
from chirpstack_api.gw import gw_pb2
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.broker import MosquittoBroker
from tests.support.gateway_proc import GatewayProcess, wait_for, write_config


class OnlineWatcher:
    """Records the arrival time of every ONLINE state message (retained or live)."""

    def __init__(self, port: int) -> None:
        self.online: list[float] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *_: c.subscribe("eu868/gateway/+/state/conn", 1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.05, 0.05)  # the watcher must be back first
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        state = gw_pb2.ConnState.FromString(msg.payload).state
        if state == gw_pb2.ConnState.State.ONLINE and not msg.retain:
            with self._lock:
                self.online.append(now)

    def arrival(self, index: int) -> float:
        with self._lock:
            return self.online[index]

    def count(self) -> int:
        with self._lock:
            return len(self.online)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def run(base: Path, outages: list[float], runs: int) -> list[float]:
    broker = MosquittoBroker(base / "broker")
    broker.start()
    gw = GatewayProcess(write_config(base, broker.port, log='level = "warning"'))
    gw.start()
    watcher = OnlineWatcher(broker.port)
    samples: list[float] = []
    try:
        wait_for(lambda: listening(broker.port), 10, "broker")
        time.sleep(2.0)
        for _ in range(runs):
            for outage in outages:
                before = watcher.count()
                broker.stop()
                time.sleep(outage)
                broker.start()
                wait_for(lambda: listening(broker.port), 10, "broker back")
                back = time.monotonic()
                wait_for(lambda b=before: watcher.count() > b, 120, "gateway ONLINE")
                first = watcher.arrival(before)
                samples.append(first - back)
                print(f"  outage {outage:>5.1f} s: back {first - back:.2f} s after the broker")
    finally:
        watcher.close()
        gw.kill()
        broker.stop()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outages", type=float, nargs="+", default=[3.0, 10.0, 30.0, 60.0])
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-reconnect-"))
    try:
        samples = run(base, args.outages, args.runs)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"reconnect after the broker returns: median {statistics.median(samples):.2f} s, "
          f"max {max(samples):.2f} s over {len(samples)} outages (target: median <= 2 s)")
    print(json.dumps({"bench": "reconnect", "samples_s": [round(s, 3) for s in samples],
                      "median_s": round(statistics.median(samples), 3),
                      "max_s": round(max(samples), 3)}))


if __name__ == "__main__":
    main()
