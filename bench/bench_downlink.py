"""Benchmark: command/down payload → decoded, validated, scheduled, TxPacket ready.

This is the pure part of the MQTT-receive → chip-load path (no broker, no SPI);
the daemon adds the chip load. Prints median and p99 per encoding; the target for
the whole path is p99 ≤ 5 ms.

    python bench/bench_downlink.py [iterations]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from chirpstack_api.gw import gw_pb2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from packet_forwarder.chirpstack import JSON, PROTOBUF, make_context, marshal
from packet_forwarder.downlink import DownlinkHandler, DutyCycle, JitQueue, RadioNow, TxLimits
from packet_forwarder.regions import load_region

GW = "0016c001ff10a235"


def request(downlink_id: int) -> gw_pb2.DownlinkFrame:
    """A typical class A answer: RX1 on the uplink channel, RX2 as the fallback."""
    frame = gw_pb2.DownlinkFrame(downlink_id=downlink_id, gateway_id=GW)
    for freq, sf, delay_s in ((868_100_000, 7, 1), (869_525_000, 12, 2)):
        item = frame.items.add(phy_payload=bytes(range(33)))
        tx = item.tx_info
        tx.frequency, tx.power = freq, 14
        tx.context = make_context(9_900_000, 1, 0)
        tx.modulation.lora.spreading_factor, tx.modulation.lora.bandwidth = sf, 125_000
        tx.modulation.lora.code_rate = gw_pb2.CodeRate.CR_4_5
        tx.modulation.lora.polarization_inversion = True
        tx.timing.delay.delay.FromSeconds(delay_s)
    return frame


def run(marshaler: str, iterations: int) -> list[float]:
    region = load_region("EU868")
    handler = DownlinkHandler(gateway_id=GW, region=region, queue=JitQueue(),
                              duty_cycle=DutyCycle(region), limits=TxLimits(max_conducted_dbm=27))
    now = RadioNow(10_000_000, 1, 0)
    payloads = [marshal(request(i), marshaler) for i in range(iterations)]
    samples = []
    for payload in payloads:
        t0 = time.perf_counter_ns()
        result = handler.handle(payload, now)
        ack = result.ack_payload()
        t1 = time.perf_counter_ns()
        assert result.scheduled is not None and ack is not None
        samples.append((t1 - t0) / 1e6)
        handler.queue.clear()                   # keep the queue empty (outside the timing)
        assert handler.duty_cycle is not None
        handler.duty_cycle.release(result.scheduled.booking)
    return samples


def main() -> None:
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    for marshaler in (PROTOBUF, JSON):
        ms = sorted(run(marshaler, iterations))
        p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
        print(f"{marshaler:9s} decode→validate→schedule→TxPacket+ack: n={len(ms)} "
              f"median={statistics.median(ms):.3f} ms p99={p99:.3f} ms max={ms[-1]:.3f} ms")


if __name__ == "__main__":
    main()
