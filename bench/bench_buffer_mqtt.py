"""The buffer against a real Mosquitto: drain and durable ingest next to bare paho QoS 1.

All three figures come from the same run, the same broker and the same payloads
(serialised ChirpStack ``UplinkFrame``s as the radio loop stores them):

* bare paho: a plain paho-mqtt client with its network thread publishing the
  bodies at QoS 1, in-flight window as the gateway's, counted at the last PUBACK;
* drain: a store filled during a simulated outage, replayed through
  ``UplinkBuffer`` → ``MqttUplinkSink`` (replay metadata added) → ``MqttLink``,
  drain rate unlimited, counted when the last record is acknowledged;
* ingest: frames/s submitted with the broker down (the link cannot connect), every
  one committed to SQLite by the end (the clock stops after the final commit).

Prints medians of ``--runs`` and the ratios against the targets (drain ≥ 0.8 × bare
paho, ingest ≥ 10,000 frames/s). Asserts nothing.

    python -m bench.bench_buffer_mqtt [--frames 20000 --runs 3 --inflight 200]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_paho import bare_paho
from buffer.config import BufferConfig
from buffer.uplink_buffer import UplinkBuffer
from gateway.sim.local_broker import free_port
from gateway.uplink_sink import MqttUplinkSink
from hal.types import CrcStatus, Modulation, RxPacket
from packet_forwarder.chirpstack import build_uplink_frame, make_context
from packet_forwarder.mqtt_link import MqttLink, MqttSettings
from packet_forwarder.topics import Topics
from tests.support.broker import MosquittoBroker

GATEWAY = "0016c001ff10a235"
TOPICS = Topics("bench", GATEWAY)
DEVICES = 1000


def bodies(n: int) -> list[tuple[str, bytes]]:
    """(device, serialised UplinkFrame) as the radio loop would submit them."""
    out = []
    for i in range(n):
        dev = i % DEVICES
        phy = bytes([0x40]) + (0x26000000 + dev).to_bytes(4, "little") + bytes([0]) + \
            (i // DEVICES).to_bytes(2, "little") + bytes([1]) + bytes(12) + bytes(4)
        rx = RxPacket(payload=phy, frequency_hz=868_100_000, if_chain=0, rf_chain=0,
                      modulation=Modulation.LORA, spreading_factor=7, bandwidth_hz=125_000,
                      code_rate="4/5", crc_status=CrcStatus.CRC_OK, rssi_dbm=-70.0,
                      snr_db=8.0, count_us=i)
        frame = build_uplink_frame(rx, gateway_id=GATEWAY, uplink_id=i,
                                   gw_time_ns=time.time_ns(), context=make_context(i, 1, 0))
        out.append((f"{0x26000000 + dev:08x}", frame.SerializeToString()))
    return out


def _link(url: str, inflight: int) -> MqttLink:
    return MqttLink(MqttSettings(server=url, max_inflight=inflight, client_id=GATEWAY),
                    TOPICS, on_command=lambda n, p: None)


async def ingest(path: Path, frames: list[tuple[str, bytes]], inflight: int) -> float:
    """Broker down: every frame goes to SQLite; frames/s until the last is committed."""
    link = _link(f"mqtt://127.0.0.1:{free_port()}", inflight)  # nobody listens there
    sink = MqttUplinkSink(link, TOPICS)
    buf = UplinkBuffer(BufferConfig(path=path, memory_max_records=10**7), sink, boot_id="b")
    sink.ready_callback = buf.sink_ready
    await buf.open()
    start = time.perf_counter()
    for i in range(0, len(frames), 100):  # one radio poll's worth at a time
        for device, body in frames[i:i + 100]:
            buf.submit(device, body, received_ns=time.time_ns(),
                       monotonic_ns=time.monotonic_ns(), clock_synced=True)
        await asyncio.sleep(0)
    await buf.flush()
    elapsed = time.perf_counter() - start
    stats = buf.stats()
    await buf.close()
    if stats.persisted_rows != len(frames) or stats.dropped_total:
        raise RuntimeError(f"ingest lost frames: {stats}")
    return len(frames) / elapsed


async def drain(path: Path, url: str, inflight: int) -> float:
    """Replay the whole store to the broker; frames/s until the last PUBACK."""
    link = _link(url, inflight)
    sink = MqttUplinkSink(link, TOPICS)
    buf = UplinkBuffer(BufferConfig(path=path, drain_rate_per_s=0.0), sink, boot_id="b")
    sink.ready_callback = buf.sink_ready
    await buf.open()
    total = buf.stats().depth
    task = asyncio.create_task(link.run())
    while not link.connected:
        await asyncio.sleep(0.001)
    start = time.perf_counter()
    buf.sink_ready()
    while buf.stats().depth > 0:
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - start
    await buf.close()
    await link.stop()
    await task
    return total / elapsed


def run_once(base: Path, broker: MosquittoBroker, frames: list[tuple[str, bytes]],
             inflight: int, r: int) -> tuple[float, float, float]:
    paho = bare_paho(broker.port, len(frames), frames[0][1], inflight)
    path = base / f"run{r}" / "buffer.sqlite"
    path.parent.mkdir(parents=True)
    ing = asyncio.run(ingest(path, frames, inflight))
    dr = asyncio.run(drain(path, broker.url, inflight))
    return paho, dr, ing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--inflight", type=int, default=200)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    frames = bodies(args.frames)
    base = Path(tempfile.mkdtemp(prefix="bench-buffer-mqtt-"))
    results = []
    try:
        with MosquittoBroker(base / "broker") as broker:
            for r in range(args.runs):
                results.append(run_once(base, broker, frames, args.inflight, r))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    paho, dr, ing = (statistics.median(x) for x in zip(*results, strict=True))
    size = statistics.mean(len(b) for _, b in frames)
    print(f"{args.frames:,} frames of {size:.0f} B, QoS 1, in-flight {args.inflight}, "
          f"median of {args.runs} runs")
    print(f"bare paho QoS 1 publisher:     {paho:>9,.0f} frames/s")
    print(f"buffer drain to the broker:    {dr:>9,.0f} frames/s  = {dr / paho:.2f} x bare paho "
          f"(target >= 0.80)")
    print(f"ingest, broker down, durable:  {ing:>9,.0f} frames/s  (target >= 10,000)")


if __name__ == "__main__":
    main()
