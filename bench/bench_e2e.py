"""End-to-end uplink benchmark: inject socket → emulated SX1302 → gateway → Mosquitto → subscriber.

Runs the real gateway as a subprocess (``python -m gateway run``) against a
loopback Mosquitto, injects frames as fast as the inject socket accepts them
(it applies back-pressure when the emulated chip's RX buffer is full), and
prints the end-to-end rate and the injection → broker-delivery latency (median,
p99) as seen by a subscriber. Usage::

    python bench/bench_e2e.py [--frames 20000] [--paced-rate 200] [--json out.json]

Two phases: a flood (throughput) and a paced run (latency at a realistic load,
where queueing inside the benchmark itself does not dominate).
"""

from __future__ import annotations

import argparse
import json
import statistics
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from chirpstack_api.gw import gw_pb2
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.sim.inject import send_inject
from gateway.sim.local_broker import LocalBroker
from tests.support.gateway_proc import GatewayProcess, wait_for, write_config


class Receiver:
    """Records the arrival time of each frame index (carried in the payload)."""

    def __init__(self, port: int) -> None:
        self.arrivals: dict[int, float] = {}
        self.duplicates = 0
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-ns")
        self.client.on_message = self._on_message
        ready = threading.Event()
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_connect = lambda c, *a: c.subscribe("eu868/gateway/+/event/up", qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        ready.wait(10)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        frame = gw_pb2.UplinkFrame()
        frame.ParseFromString(msg.payload)
        index = struct.unpack_from("<I", frame.phy_payload, 9)[0]
        with self._lock:
            if index in self.arrivals:
                self.duplicates += 1
            else:
                self.arrivals[index] = now

    def count(self) -> int:
        with self._lock:
            return len(self.arrivals)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def packet(index: int) -> dict[str, object]:
    dev_addr = 0x26020000 + index % 500
    phy = bytes([0x40]) + struct.pack("<IBH", dev_addr, 0, (index // 500) & 0xFFFF) + b"\x01"
    phy += struct.pack("<I", index) + bytes(12) + b"\x00\x00\x00\x00"
    return {"phy_payload": phy.hex(), "frequency": 868_100_000, "sf": 7, "rssi": -60, "snr": 8}


def run_phase(gw: GatewayProcess, rx: Receiver, first: int, count: int,
              rate: float | None) -> dict[str, float]:
    sent_at: dict[int, float] = {}
    start = time.perf_counter()
    for i in range(first, first + count):
        if rate:
            target = start + (i - first) / rate
            while time.perf_counter() < target:
                time.sleep(max(0.0, target - time.perf_counter()) / 2)
        sent_at[i] = time.perf_counter()
        send_inject(gw.inject_socket, packet(i))
    wait_for(lambda: all(i in rx.arrivals for i in range(first, first + count)), 300,
             "all frames at the subscriber")
    end = max(rx.arrivals[i] for i in range(first, first + count))
    lat = sorted((rx.arrivals[i] - sent_at[i]) * 1000 for i in range(first, first + count))
    return {
        "frames": count,
        "frames_per_s": count / (end - start),
        "latency_median_ms": statistics.median(lat),
        "latency_p99_ms": lat[int(0.99 * (len(lat) - 1))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--paced-frames", type=int, default=2_000)
    parser.add_argument("--paced-rate", type=float, default=200.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker = LocalBroker(work / "broker")
        broker.start()
        gw = GatewayProcess(write_config(work, broker.port,
                                         log='level = "warning"',
                                         edge='unknown_devaddr = "forward"'))
        gw.start()
        rx = Receiver(broker.port)
        try:
            flood = run_phase(gw, rx, 0, args.frames, None)
            paced = run_phase(gw, rx, args.frames, args.paced_frames, args.paced_rate)
        finally:
            rx.close()
            gw.kill()
            broker.stop()
    result = {"flood": flood, "paced": paced, "duplicates": rx.duplicates}
    print(f"flood : {flood['frames']} frames, {flood['frames_per_s']:.0f} frames/s end to end, "
          f"latency median {flood['latency_median_ms']:.1f} ms, p99 "
          f"{flood['latency_p99_ms']:.1f} ms (queueing under saturation)")
    print(f"paced : {paced['frames']} frames at {args.paced_rate:.0f}/s, latency median "
          f"{paced['latency_median_ms']:.2f} ms, p99 {paced['latency_p99_ms']:.2f} ms")
    print(f"duplicates: {rx.duplicates}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
