"""A broker outage while 100,000 frames arrive from 1,000 devices, then the drain.

Real subprocesses: ``python -m gateway run`` on the emulator and a persistent
Mosquitto; a persistent-session subscriber records when each frame arrives.
Once the first replayed frame has arrived (the gateway's reconnect back-off is
not part of the drain), and while the backlog drains at ``--drain-rate``, a live
frame from a device with nothing waiting is injected every 20 ms; its latency is
from ``send_inject`` returning to the subscriber receiving it. Prints the per-device order check,
loss, duplicates, drain rate, the live frames' latency percentiles, the gateway's
memory (VmRSS) holding the whole backlog before the broker returns and its peak
(VmHWM), and one JSON line. Asserts nothing. Targets: live p99 ≤ 50 ms, RSS ≤ 60 MB.

    python -m bench.bench_outage [--frames 100000 --devices 1000 --drain-rate 1000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import paho.mqtt.client as mqtt
from chirpstack_api.gw import gw_pb2

from gateway.sim.inject import send_inject
from tests.support.buffer_e2e import PersistentBroker, key, order_violations, packet
from tests.support.gateway_proc import GatewayProcess, UplinkCollector, wait_for, write_config


class Collector(UplinkCollector):
    """Notes when each frame first arrived; decodes each message once (a slow subscriber
    would queue messages in the broker and show its own delay as the gateway's)."""

    def __init__(self, port: int) -> None:
        self.arrived: dict[tuple[int, int], float] = {}
        super().__init__(port)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        frame = gw_pb2.UplinkFrame.FromString(msg.payload)
        with self._lock:
            self.frames.append(frame)
        self.arrived.setdefault(key(frame.phy_payload), now)


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process, in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines() if ":" in line)
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def run(base: Path, frames: int, devices: int, drain_rate: float) -> dict[str, object]:
    broker = PersistentBroker(base / "broker")
    broker.start()
    gw = GatewayProcess(write_config(base, broker.port, buffer=(
        f"commit_interval_s = 1.0\ndrain_rate_per_s = {drain_rate}\nmax_size_mb = 1024")))
    gw.start()
    collector = Collector(broker.port)
    try:
        broker.stop()
        per_device = frames // devices
        backlog = [(d, n) for n in range(per_device) for d in range(devices)]
        t0 = time.monotonic()
        for k in backlog:
            send_inject(gw.inject_socket, packet(*k))
        ingest_s = time.monotonic() - t0
        print(f"outage: {len(backlog):,} frames from {devices:,} devices injected in "
              f"{ingest_s:.1f} s ({len(backlog) / ingest_s:,.0f} frames/s through the radio path)")
        assert gw.proc is not None
        time.sleep(3.0)  # the last frames reach the buffer and are committed
        rss_mb, hwm_mb = memory_mb(gw.proc.pid)
        print(f"memory holding the backlog: VmRSS {rss_mb:.1f} MB, peak VmHWM {hwm_mb:.1f} MB")
        broker.start()
        wait_for(lambda: bool(collector.arrived), 120, "the gateway to reconnect")
        drain_start = min(collector.arrived.values())  # reconnect back-off is not drain time
        live_sent: dict[tuple[int, int], float] = {}
        i = 0
        want = set(backlog)
        while not want <= collector.arrived.keys():
            k = (devices + i, 0)
            send_inject(gw.inject_socket, packet(*k))
            live_sent[k] = time.monotonic()
            i += 1
            time.sleep(0.02)
            if time.monotonic() - drain_start > 3600:
                raise TimeoutError("drain did not finish in an hour")
        drain_s = max(collector.arrived[k] for k in backlog) - drain_start
        wait_for(lambda: live_sent.keys() <= collector.arrived.keys(), 30, "live frames")
        time.sleep(1.0)
        snapshot = collector.snapshot()
    finally:
        collector.close()
        gw.kill()
        broker.stop()
    latency_ms = [(collector.arrived[k] - t) * 1000 for k, t in live_sent.items()]
    unique = {key(f.phy_payload) for f in snapshot}
    print(f"per-device order: {order_violations(snapshot)} violations; lost "
          f"{len(want - unique)}; duplicates {len(snapshot) - len(unique)}")
    print(f"drain: {len(backlog):,} frames in {drain_s:.1f} s = {len(backlog) / drain_s:,.0f} "
          f"frames/s (drain_rate_per_s = {drain_rate:g})")
    print(f"live frames during the drain: {len(latency_ms)}, latency p50 "
          f"{statistics.median(latency_ms):.1f} ms, p99 {percentile(latency_ms, 99):.1f} ms, "
          f"max {max(latency_ms):.1f} ms")
    return {"bench": "outage", "frames": len(backlog), "devices": devices,
            "drain_rate_per_s": drain_rate, "order_violations": order_violations(snapshot),
            "lost": len(want - unique), "duplicates": len(snapshot) - len(unique),
            "drain_frames_per_s": round(len(backlog) / drain_s),
            "live_p50_ms": round(statistics.median(latency_ms), 1),
            "live_p99_ms": round(percentile(latency_ms, 99), 1),
            "live_max_ms": round(max(latency_ms), 1),
            "rss_backlog_mb": round(rss_mb, 1), "rss_peak_mb": round(hwm_mb, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--drain-rate", type=float, default=1000.0)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-outage-"))
    try:
        print(json.dumps(run(base, args.frames, args.devices, args.drain_rate)))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
