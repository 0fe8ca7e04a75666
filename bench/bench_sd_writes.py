"""Bytes the gateway writes per frame, from the kernel's per-process I/O accounting.

Runs the real daemon (``python -m gateway run`` on the emulator, default buffer
settings: one commit per second) against a local Mosquitto and injects frames
at 1, 10 and 100 frames/s, with the line up and during an outage (broker
stopped). After a warm-up, it reads ``/proc/<gateway pid>/io`` before and after
a steady-state window and prints, per frame:

* ``wchar``: bytes the process passed to write() (SQLite pages, WAL, its log);
* ``write_bytes``: bytes the process caused to be sent to the block device, which
  is what wears an SD card (0 on tmpfs: pass ``--dir`` on a real disk).

Target: ≤ 1 KB per frame at 10 frames/s. Asserts nothing.

    python -m bench.bench_sd_writes [--seconds 20 --dir /var/tmp/sd-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.sim.inject import send_inject
from tests.support.broker import MosquittoBroker
from tests.support.buffer_e2e import packet
from tests.support.gateway_proc import GatewayProcess, write_config

RATES = (1, 10, 100)
DEVICES = 200


def proc_io(pid: int) -> tuple[int, int]:
    text = Path(f"/proc/{pid}/io").read_text()
    fields = dict(line.split(": ") for line in text.splitlines())
    return int(fields["wchar"]), int(fields["write_bytes"])


def inject_paced(gw: GatewayProcess, rate: int, seconds: float, start_n: int) -> int:
    """Inject at ``rate`` frames/s for ``seconds``; returns how many were sent."""
    start = time.monotonic()
    n = 0
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(elapsed * rate) + 1
        while n < due:
            i = start_n + n
            send_inject(gw.inject_socket, packet(i % DEVICES, i // DEVICES))
            n += 1
        time.sleep(min(0.01, 1 / rate))
    return n


def measure(base: Path, rate: int, outage: bool, seconds: float) -> tuple[float, float]:
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    broker = MosquittoBroker(base / "broker")
    broker.start()
    gw = GatewayProcess(write_config(base, broker.port, buffer="commit_interval_s = 1.0",
                                     log='level = "warning"'))
    gw.start()
    try:
        if outage:
            broker.stop()
        sent = inject_paced(gw, rate, 3.0, 0)  # warm-up: connections, first commits
        assert gw.proc is not None
        os.sync()
        w0, b0 = proc_io(gw.proc.pid)
        n = inject_paced(gw, rate, seconds, sent)
        time.sleep(1.2)  # the last frames' commit
        os.sync()
        w1, b1 = proc_io(gw.proc.pid)
    finally:
        gw.kill()
        broker.stop()
    return (w1 - w0) / n, (b1 - b0) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="steady-state window")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where the buffer lives (default: a temporary directory)")
    parser.add_argument("--rates", type=int, nargs="+", default=list(RATES))
    parser.add_argument("--outage-only", action="store_true",
                        help="skip the line-up phase (nothing is written then)")
    args = parser.parse_args()
    results: list[dict[str, object]] = []
    root = args.dir or Path(tempfile.mkdtemp(prefix="bench-sd-"))
    print(f"bytes per frame, wchar / write_bytes, {args.seconds:g} s windows, "
          f"commit_interval_s = 1.0, buffer in {root}")
    try:
        for outage in (True,) if args.outage_only else (False, True):
            cells = []
            for rate in args.rates:
                wchar, wbytes = measure(root / f"r{rate}-{int(outage)}", rate, outage,
                                        args.seconds)
                results.append({"rate_per_s": rate, "outage": outage,
                                "wchar_per_frame": round(wchar), "write_bytes_per_frame":
                                round(wbytes)})
                cells.append(f"{rate:>3}/s {wchar:>7,.0f} / {wbytes:>7,.0f}")
            label = "broker down (outage)" if outage else "line up"
            print(f"  {label:<21}" + "   ".join(cells))
        print(json.dumps({"bench": "sd_writes", "seconds": args.seconds, "results": results}))
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
