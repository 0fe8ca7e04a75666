"""Benchmarks of the uplink buffer: ingest with the sink down, drain, and bytes written per frame.

Prints numbers; asserts nothing. Run: ``python -m bench.bench_buffer [--runs 5]``.

* ingest: frames/s submitted from the event loop (in radio-sized batches) with the
  sink down, every frame durable (committed) by the end of the run;
* drain: frames/s replayed from a full store to a sink that acknowledges each
  publish on the next loop turn, drain rate unlimited, in-flight window 100;
* write cost: bytes per frame from ``/proc/self/io`` (``wchar`` = bytes passed to
  write(), ``write_bytes`` = bytes the kernel sends to the block device) while
  simulating 1, 10 and 100 frames/s for 300 s of simulated time (one commit per
  simulated second), with a sink that acknowledges within the commit window, one
  that acknowledges only after the next commit, and one that is down.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from buffer.config import BufferConfig
from buffer.types import AckCallback, Delivery
from buffer.uplink_buffer import UplinkBuffer

BODY = bytes(range(120))  # about the size of a serialised ChirpStack UplinkFrame
DEVICES = [f"{i:016x}" for i in range(500)]


class SimClock:
    def __init__(self) -> None:
        self.mono = 10**12
        self.wall = 1_700_000_000 * 10**9

    def monotonic_ns(self) -> int:
        return self.mono

    def wall_ns(self) -> int:
        return self.wall


class BenchSink:
    """``up``: connected; ``ack_mode``: 'soon' (next loop turn), 'held' (when told), 'never'."""

    def __init__(self, *, up: bool, ack_mode: str = "soon", window: int = 100) -> None:
        self.up = up
        self.ack_mode = ack_mode
        self.window = window
        self.inflight = 0
        self.held: list[AckCallback] = []
        self.acked = 0
        self.ready: Callable[[], None] | None = None

    def can_send(self) -> bool:
        return self.up and self.inflight < self.window

    def send(self, delivery: Delivery, on_result: AckCallback) -> None:
        self.inflight += 1
        if self.ack_mode == "soon":
            asyncio.get_running_loop().call_soon(self._ack, on_result)
        else:
            self.held.append(on_result)

    def _ack(self, on_result: AckCallback) -> None:
        self.inflight -= 1
        self.acked += 1
        on_result(True)
        if self.ready is not None:
            self.ready()

    def release(self) -> None:
        held, self.held = self.held, []
        for cb in held:
            self._ack(cb)


def _config(path: Path, **kw: float) -> BufferConfig:
    return BufferConfig(path=path, **kw)  # type: ignore[arg-type]


def _submit(buf: UplinkBuffer, i: int, clock: SimClock | None = None) -> None:
    now_wall = clock.wall if clock else time.time_ns()
    now_mono = clock.mono if clock else time.monotonic_ns()
    buf.submit(DEVICES[i % len(DEVICES)], BODY, received_ns=now_wall, monotonic_ns=now_mono,
               clock_synced=True)


async def ingest_once(path: Path, seconds: float) -> float:
    """Unpaced: as fast as the loop can submit; the clock stops when all is committed."""
    sink = BenchSink(up=False)
    buf = UplinkBuffer(_config(path, memory_max_records=10**8), sink, boot_id="bench")
    await buf.open()
    start = time.perf_counter()
    n = 0
    while time.perf_counter() - start < seconds:
        for _ in range(100):  # one radio poll's worth, then let the loop breathe
            _submit(buf, n)
            n += 1
        await asyncio.sleep(0)
    await buf.flush()  # everything submitted is now committed
    elapsed = time.perf_counter() - start
    stats = buf.stats()
    await buf.close()
    assert stats.persisted_rows == n and not stats.dropped, (stats, n)
    return n / elapsed


async def paced_once(path: Path, rate: int, seconds: float) -> tuple[int, int]:
    """Paced at ``rate`` with the default config: (drops, most records ever unwritten)."""
    sink = BenchSink(up=False)
    buf = UplinkBuffer(_config(path), sink, boot_id="bench")
    await buf.open()
    start = time.perf_counter()
    n = peak = 0
    while (now := time.perf_counter() - start) < seconds:
        while n < now * rate:
            _submit(buf, n)
            n += 1
        stats = buf.stats()
        peak = max(peak, stats.depth - stats.persisted_rows)
        await asyncio.sleep(0.005)
    await buf.flush()
    stats = buf.stats()
    await buf.close()
    return stats.dropped_total, peak


async def drain_once(path: Path) -> float:
    sink = BenchSink(up=True, ack_mode="soon", window=100)
    buf = UplinkBuffer(_config(path, drain_rate_per_s=0.0), sink, boot_id="bench")
    sink.ready = buf.sink_ready
    await buf.open()
    total = buf.stats().depth
    start = time.perf_counter()
    buf.sink_ready()
    while buf.stats().depth > 0:
        await asyncio.sleep(0.001)
        buf.sink_ready()
    elapsed = time.perf_counter() - start
    await buf.close()
    return total / elapsed


def _io() -> tuple[int, int]:
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(fields["wchar"]), int(fields["write_bytes"])


async def write_cost(path: Path, rate: int, ack_mode: str,
                     seconds: int = 300) -> tuple[float, float]:
    """Bytes per frame at ``rate`` frames/s, one commit per simulated second."""
    clock = SimClock()
    sink = BenchSink(up=ack_mode != "down", ack_mode="held")
    buf = UplinkBuffer(_config(path), sink, boot_id="bench", clock=clock)
    sink.ready = buf.sink_ready
    await buf.open()
    os.sync()
    w0, b0 = _io()
    n = 0
    for _ in range(seconds):
        for _ in range(rate):
            clock.mono += 10**9 // rate
            clock.wall += 10**9 // rate
            _submit(buf, n, clock)
            n += 1
        if ack_mode == "ack":
            sink.release()  # acknowledged within the commit window
        await buf.flush()
        if ack_mode == "late":
            sink.release()  # acknowledged after the rows were written: deleted next time
    await buf.flush()
    os.sync()
    w1, b1 = _io()
    await buf.close()
    return (w1 - w0) / n, (b1 - b0) / n


def _fresh(base: Path, name: str) -> Path:
    d = base / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d / "buffer.sqlite"


async def main(runs: int, seconds: float, base: Path) -> None:
    ingest, drain = [], []
    for r in range(runs):
        path = _fresh(base, f"ingest{r}")
        ingest.append(await ingest_once(path, seconds))
        drain.append(await drain_once(path))
    print(f"ingest, sink down, durable: median {statistics.median(ingest):,.0f} frames/s "
          f"(runs: {', '.join(f'{x:,.0f}' for x in ingest)})")
    drops, peak = await paced_once(_fresh(base, "paced"), 10_000, seconds * 2)
    print(f"paced 10,000 frames/s for {seconds * 2:.0f} s, default config: dropped {drops}, "
          f"most unwritten at once {peak:,}")
    print(f"drain, acking sink, unlimited rate: median {statistics.median(drain):,.0f} frames/s "
          f"(runs: {', '.join(f'{x:,.0f}' for x in drain)})")
    print("bytes per frame (wchar / write_bytes), 300 simulated s, one commit per second:")
    for mode, label in (("ack", "acked within 1 s"), ("late", "acked after commit"),
                        ("down", "sink down")):
        cells = []
        for rate in (1, 10, 100):
            wchar, wbytes = await write_cost(_fresh(base, f"cost-{mode}-{rate}"), rate, mode)
            cells.append(f"{rate:>3}/s {wchar:>8,.0f} / {wbytes:>8,.0f}")
        print(f"  {label:<20} " + "   ".join(cells))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one ingest run")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the files "
                        "(default: a temporary directory; use a real disk for write_bytes)")
    args = parser.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="bench-buffer-"))
    try:
        asyncio.run(main(args.runs, args.seconds, base))
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
