"""Live latency to a healthy network server while another is down, then draining.

Real subprocesses: ``python -m gateway run`` on the emulator with two ChirpStack
MQTT servers, ``default`` (broker A) and ``city`` (broker B), no route filters,
so every frame goes to both. Subscribers note when each frame reaches a broker.
Three phases, each with live frames injected at ``--rate`` frames/s for
``--seconds``; latency is from ``send_inject`` returning to broker B's subscriber
receiving the frame:

1. ``both_up`` — the baseline.
2. ``a_down`` — broker A stopped; first ``--backlog`` frames are injected as fast as
   the radio path takes them (A's backlog), then the live phase.
3. ``a_draining`` — broker A back; the live phase runs while A drains its backlog.

Then checks broker A got every frame once in per-device order and broker B got
nothing twice. Prints one line per phase and a JSON summary. Asserts nothing.

    python -m bench.bench_multi_server [--rate 200 --seconds 10 --backlog 20000
                                        --drain-rate 200]
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

from bench.bench_outage import Collector, percentile
from gateway.sim.inject import send_inject
from tests.support.buffer_e2e import PersistentBroker, key, order_violations, packet
from tests.support.gateway_proc import GatewayProcess, wait_for, write_config


def live_phase(gw: GatewayProcess, collector: Collector, rate: float, seconds: float,
               first_device: int) -> list[float]:
    """Inject paced live frames from fresh devices; their latencies at ``collector`` (ms)."""
    sent: dict[tuple[int, int], float] = {}
    period = 1.0 / rate
    start = time.monotonic()
    n = 0
    while n < rate * seconds:
        due = start + n * period
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        k = (first_device + n % 50, n // 50)
        send_inject(gw.inject_socket, packet(*k))
        sent[k] = time.monotonic()
        n += 1
    wait_for(lambda: sent.keys() <= collector.arrived.keys(), 60, "live frames at broker B")
    return [(collector.arrived[k] - t) * 1000 for k, t in sent.items()]


def summary(name: str, latency_ms: list[float]) -> dict[str, float | str | int]:
    row: dict[str, float | str | int] = {
        "phase": name, "frames": len(latency_ms),
        "p50_ms": round(statistics.median(latency_ms), 2),
        "p99_ms": round(percentile(latency_ms, 99), 2), "max_ms": round(max(latency_ms), 2)}
    print(f"{name:11} live frames {row['frames']:5}  p50 {row['p50_ms']:7.2f} ms  "
          f"p99 {row['p99_ms']:7.2f} ms  max {row['max_ms']:7.2f} ms")
    return row


def run(base: Path, rate: float, seconds: float, backlog: int, drain_rate: float) -> None:
    a, b = PersistentBroker(base / "broker-a"), PersistentBroker(base / "broker-b")
    a.start()
    b.start()
    config = write_config(base, a.port, buffer=(
        f"commit_interval_s = 1.0\ndrain_rate_per_s = {drain_rate}\nmax_size_mb = 1024"))
    config.write_text(config.read_text() + f'''
[[server]]
name = "city"
protocol = "chirpstack_mqtt"
url = "mqtt://127.0.0.1:{b.port}"
topic_prefix = "eu868"
max_inflight = 200
''')
    gw = GatewayProcess(config)
    gw.start()
    at_a, at_b = Collector(a.port), Collector(b.port)
    rows = []
    try:
        time.sleep(1.0)
        rows.append(summary("both_up", live_phase(gw, at_b, rate, seconds, 10_000)))
        a.stop()
        held = [(d, n) for n in range(max(1, backlog // 100)) for d in range(100)][:backlog]
        t0 = time.monotonic()
        for k in held:
            send_inject(gw.inject_socket, packet(*k))
        print(f"a_down: {len(held):,} backlog frames injected in {time.monotonic() - t0:.1f} s")
        rows.append(summary("a_down", live_phase(gw, at_b, rate, seconds, 20_000)))
        a.start()
        wait_for(lambda: bool(set(held) & at_a.arrived.keys()), 120, "broker A to get frames")
        rows.append(summary("a_draining", live_phase(gw, at_b, rate, seconds, 30_000)))
        wait_for(lambda: set(held) <= at_a.arrived.keys(), 600, "the drain to finish")
        time.sleep(1.0)
        got_a, got_b = at_a.snapshot(), at_b.snapshot()
    finally:
        at_a.close()
        at_b.close()
        gw.kill()
        a.stop()
        b.stop()
    keys_a = [key(f.phy_payload) for f in got_a]
    keys_b = [key(f.phy_payload) for f in got_b]
    checks = {"a_lost": len(set(held) - set(keys_a)),
              "a_order_violations": order_violations(got_a),
              "b_duplicates": len(keys_b) - len(set(keys_b))}
    print(f"broker A: lost {checks['a_lost']}, per-device order violations "
          f"{checks['a_order_violations']}; broker B duplicates {checks['b_duplicates']}")
    print(json.dumps({"rate": rate, "seconds": seconds, "backlog": backlog,
                      "drain_rate": drain_rate, "phases": rows,
                      **checks}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--backlog", type=int, default=20_000)
    parser.add_argument("--drain-rate", type=float, default=200.0,
                        help="buffer.drain_rate_per_s (the shipped default is 200; 0 = unlimited)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-multi-"))
    try:
        run(base, args.rate, args.seconds, args.backlog, args.drain_rate)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
