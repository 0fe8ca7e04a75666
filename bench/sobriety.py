"""What the gateway costs on a small machine: idle CPU, CPU per frame, memory, flood speed.

One run starts a real Mosquitto and the real daemon (``python -m gateway run``, emulator
backend, 10 ms poll, MIC checks on with every device's keys in the edge key store) and
measures, from outside the daemon, in ``/proc/PID``:

* cold start: process spawn to ``READY=1`` on a ``NOTIFY_SOCKET`` of ours (what systemd
  waits for);
* idle: CPU % of one core and context switches per second (voluntary + involuntary, summed
  over every thread of the daemon) over ``--idle-s`` seconds with no traffic, and in the same
  window the CPU % of a bare thread that only wakes every 10 ms (the floor the poll cadence
  sets on this machine);
* CPU µs per frame at 10, 100 and 260 frames/s (the SX1302's maximum): CPU time of the
  daemon over the window divided by frames, gross and net of the idle cost, and with the
  replay feed also without what the emulated chip spent taking the frames in (the chip
  measures that on the radio thread and the daemon logs it per replay: a real chip fills
  its buffer with no host CPU);
* flood: ``--flood-frames`` frames injected as fast as the emulated chip takes them,
  received by a QoS 1 subscriber; then a bare paho QoS 1 publisher sends the very payloads
  the daemon published, with the daemon's in-flight window, to the same broker and the same
  subscriber. The ratio of the two rates is the figure to watch;
* RSS after start and after the flood.

Frames are genuine LoRaWAN 1.0 data uplinks (valid MIC, advancing FCnt) so every one goes
through the full edge check and is forwarded.

How frames reach the emulated chip (``--feed``, reported in the text and the JSON):

* ``replay`` (the default): each phase's frames are written once to a JSON Lines file and
  one control datagram, ``{"replay": path, "rate": r}``, starts it; the chip takes the
  frames in as they fall due at the radio thread's reads of its fill level, with no
  event-loop work per frame, as a real SX1302 fills its buffer with no host CPU. The
  CPU per frame and the flood then measure the gateway, not the emulator's socket;
* ``socket``: one datagram per frame on the inject socket, as before (each one an
  event-loop wake-up, a ``recv`` and a JSON parse in the daemon: about 95 µs of the
  per-frame figure at 260/s were that).

Either way the paced phases' CPU runs from just before the first datagram until every
frame has arrived, and the flood's rate from then to the last arrival. Run from the
repository root::

    python bench/sobriety.py [--idle-s 60] [--flood-frames 100000] [--feed socket]
                             [--json out.json]

``--idle-only`` stops after the idle phase (start, RSS, idle CPU) for quick comparisons.
``--runs N`` repeats the whole measurement and reports medians (and every run in JSON).
``--smaps N`` also prints where the resident memory after start lies: the N largest
mappings of ``/proc/PID/smaps`` (anonymous memory, ``[heap]``, each shared library) and
the thread count. ``--python-flags`` goes before ``-m gateway`` on the daemon's command
line: ``--python-flags="-X importtime"`` writes every import's time into its log.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from packet_forwarder import lorawan as lw
from tests.support.broker import MosquittoBroker
from tests.support.gateway_proc import GATEWAY_ID, write_config

ROOT = Path(__file__).resolve().parent.parent
DEVICES = 500
RATES = (10.0, 100.0, 260.0)
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
TOPIC = f"eu868/gateway/{GATEWAY_ID}/event/up"


# --- what /proc says about the daemon ---------------------------------------------------------

def cpu_s(pid: int) -> float:
    """utime + stime of the whole process (all threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def ctx_switches(pid: int) -> int:
    """Voluntary + involuntary context switches summed over the live threads."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "status").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        for line in text.splitlines():
            if "ctxt_switches:" in line:
                total += int(line.split()[1])
    return total


def rss_mb(pid: int) -> float:
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * PAGE / 1e6


def smaps_mb(pid: int) -> dict[str, float]:
    """Resident MB per mapped file (``[anon]`` for anonymous memory), largest first."""
    by_name: collections.Counter[str] = collections.Counter()
    name = "[anon]"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and not fields[0].endswith(":"):  # a mapping's header line
            name = fields[5] if len(fields) > 5 else "[anon]"
        elif fields[0] == "Rss:":
            by_name[name] += int(fields[1])
    return {key: kib / 1024 for key, kib in by_name.most_common()}


def threads(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


# --- frames -----------------------------------------------------------------------------------

class Devices:
    """DEVICES LoRaWAN 1.0 sessions; ``frame(i)`` is the i-th genuine uplink of the run."""

    def __init__(self) -> None:
        rng = random.Random(18)
        self.keys = [lw.SessionKeys10(rng.randbytes(16), rng.randbytes(16))
                     for _ in range(DEVICES)]
        self.addrs = [bytes([0x26, 0x02, i >> 8, i & 0xFF]) for i in range(DEVICES)]

    def provision(self, work: Path) -> None:
        from packet_forwarder.keystore import KeyStore
        from packet_forwarder.keystore.records import records_from_fields

        sessions = []
        for i, (addr, keys) in enumerate(zip(self.addrs, self.keys, strict=True)):
            n = keys.nwk_s_key.hex()
            session, _ = records_from_fields({
                "dev_eui": f"{i:016x}", "dev_addr": addr.hex(), "mac_version": "1.0.3",
                "nwk_s_enc_key": n, "s_nwk_s_int_key": n, "f_nwk_s_int_key": n})
            sessions.append(session)
        store = KeyStore(work / "keys.sqlite", work / "master.key")
        store.apply([s for s in sessions if s is not None])
        store.close()

    def frame(self, i: int) -> bytes:
        dev = i % DEVICES
        fields = lw.DataFields(dev_addr=self.addrs[dev], fcnt=i // DEVICES, fport=1,
                               payload=i.to_bytes(4, "little") + bytes(8))
        phy = lw.build_data_uplink_10(fields, self.keys[dev])
        return json.dumps({"phy_payload": phy.hex(), "frequency": 868_100_000, "sf": 7,
                           "rssi": -60, "snr": 8}).encode()


# --- the daemon and the network-server stand-in -----------------------------------------------

class Daemon:
    """``python -m gateway run`` with a NOTIFY_SOCKET of ours, timed to READY=1."""

    def __init__(self, work: Path, port: int, max_inflight: int, drain_rate: float,
                 python_flags: str = "") -> None:
        self.work = work
        self.python_flags = shlex.split(python_flags)
        self.config = write_config(
            # info: the replay feed's per-phase emulator cost is an info line (no line per frame)
            work, port, log='level = "info"',
            concentrator='poll_interval_s = 0.01',
            mqtt=f"keepalive_s = 30\nstats_interval_s = 30\nmax_inflight = {max_inflight}",
            # the shipped commit interval (the tests' config commits twice as often)
            buffer=f"commit_interval_s = 1.0\ndrain_rate_per_s = {drain_rate:g}",
            edge='unknown_devaddr = "forward"')
        self.inject_path = work / "inject.sock"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(work / "notify.sock"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.cold_start_s = 0.0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, "NOTIFY_SOCKET": str(self.work / "notify.sock"),
               "PYTHONPATH": path}  # this checkout's code, whatever is installed
        log = (self.work / "gateway.log").open("ab")
        started = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, *self.python_flags, "-m", "gateway", "run",
                                      "-c", str(self.config)], stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, cwd=self.work)
        log.close()
        self.notify.settimeout(1.0)
        deadline = started + 60
        while True:
            try:
                if b"READY=1" in self.notify.recv(4096):
                    break
            except TimeoutError:
                if self.proc.poll() is not None or time.perf_counter() > deadline:
                    text = (self.work / "gateway.log").read_text(errors="replace")
                    raise RuntimeError(f"the daemon never said READY=1:\n{text[-3000:]}") from None
        self.cold_start_s = time.perf_counter() - started
        self.notify.settimeout(None)
        threading.Thread(target=self._swallow_notify, daemon=True).start()

    def _swallow_notify(self) -> None:
        try:
            while self.notify.recv(4096):
                pass
        except OSError:
            pass

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(60)
            self.proc = None
        self.notify.close()


class Subscriber:
    """Counts QoS 1 arrivals on ``event/up`` and keeps the payloads (for the paho baseline)."""

    def __init__(self, port: int) -> None:
        self.payloads: list[bytes] = []
        self.last_at = 0.0
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-ns")
        self.client.on_message = self._on_message
        ready = threading.Event()
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_connect = lambda c, *a: c.subscribe(TOPIC, qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not ready.wait(10):
            raise TimeoutError("subscriber did not subscribe")

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.payloads.append(msg.payload)
            self.last_at = time.perf_counter()

    def count(self) -> int:
        with self._lock:
            return len(self.payloads)

    def reset(self) -> list[bytes]:
        with self._lock:
            got, self.payloads = self.payloads, []
            return got

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def wait_count(sub: Subscriber, n: int, what: str, stall_s: float = 30.0) -> None:
    """Wait until ``n`` messages arrived; fail (with the count) once none came for ``stall_s``."""
    last, since = -1, time.monotonic()
    while (got := sub.count()) < n:
        if got != last:
            last, since = got, time.monotonic()
        elif time.monotonic() - since > stall_s:
            raise TimeoutError(f"{what}: {got} of {n} arrived, none for {stall_s:g} s")
        time.sleep(0.02)


# --- the phases -------------------------------------------------------------------------------

def inject(sock: socket.socket, path: Path, frames: list[bytes], rate: float | None) -> float:
    """Send ``frames`` (paced at ``rate``/s, or as fast as the chip takes them); start time."""
    start = time.perf_counter()
    for n, datagram in enumerate(frames):
        if rate:
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        sock.sendto(datagram, str(path))
    return start


BARE_WAKER = """
import threading, time
def wake():
    signal, due = threading.Lock(), time.monotonic()
    signal.acquire()
    while True:
        due += 0.01
        signal.acquire(True, max(due - time.monotonic(), 0))
threading.Thread(target=wake, daemon=True).start()
time.sleep(3600)
"""
"""A thread waking every 10 ms as the radio thread waits (a timed ``Lock.acquire`` on a
held lock) and doing nothing else: what the poll cadence alone costs on this machine."""


def idle(pid: int, seconds: float) -> dict[str, float]:
    """The daemon's idle cost, beside a bare 100 Hz waker measured over the same window.

    On a shared VM the kernel's wake-up alone varies by a factor of two from hour to
    hour; the waker's figure, taken in the same window, says how much of the daemon's
    is the 10 ms cadence itself and how much is the work of its polls."""
    waker = subprocess.Popen([sys.executable, "-c", BARE_WAKER])
    try:
        time.sleep(0.5)
        w0 = cpu_s(waker.pid)
        cpu0, ctx0, t0 = cpu_s(pid), ctx_switches(pid), time.perf_counter()
        time.sleep(seconds)
        cpu1, ctx1, t1 = cpu_s(pid), ctx_switches(pid), time.perf_counter()
        w1 = cpu_s(waker.pid)
    finally:
        waker.kill()
        waker.wait()
    daemon_pct = 100 * (cpu1 - cpu0) / (t1 - t0)
    bare_pct = 100 * (w1 - w0) / (t1 - t0)
    return {"cpu_percent": daemon_pct, "ctx_switches_per_s": (ctx1 - ctx0) / (t1 - t0),
            "bare_100hz_waker_cpu_percent": bare_pct,
            "over_bare_waker_cpu_percent": daemon_pct - bare_pct}


class Feed:
    """How a phase's frames reach the daemon's emulated chip (see the module docstring)."""

    def __init__(self, kind: str, daemon: Daemon, sock: socket.socket) -> None:
        self.kind = kind
        self.daemon = daemon
        self.sock = sock
        self._files = 0

    def prepare(self, frames: list[bytes]) -> Path | None:
        """The replay file of ``frames`` (written before any measurement starts)."""
        if self.kind != "replay":
            return None
        self._files += 1
        path = self.daemon.work / f"replay-{self._files}.jsonl"
        with path.open("wb") as out:
            for datagram in frames:
                out.write(datagram + b"\n")
        return path

    def send(self, frames: list[bytes], replay: Path | None, rate: float | None) -> float:
        """Start the frames on their way (paced at ``rate``/s, or all at once); start time."""
        if replay is None:
            return inject(self.sock, self.daemon.inject_path, frames, rate)
        start = time.perf_counter()
        control = {"replay": str(replay), "rate": rate or 0}
        self.sock.sendto(json.dumps(control).encode(), str(self.daemon.inject_path))
        return start


def paced(daemon: Daemon, sub: Subscriber, feed: Feed, frames: list[bytes],
          rate: float, idle_cpu_percent: float) -> dict[str, float]:
    replay = feed.prepare(frames)
    sub.reset()
    cpu0, t0 = cpu_s(daemon.pid), time.perf_counter()
    feed.send(frames, replay, rate)
    wait_count(sub, len(frames), f"{len(frames)} frames at {rate:g}/s")
    time.sleep(0.05)  # the last frame's PUBACK and commit bookkeeping
    cpu1, t1 = cpu_s(daemon.pid), time.perf_counter()
    spent = cpu1 - cpu0
    net = spent - idle_cpu_percent / 100 * (t1 - t0)
    result: dict[str, Any] = {"frames": len(frames),
                              "cpu_us_per_frame": spent / len(frames) * 1e6,
                              "cpu_us_per_frame_net_of_idle": max(net, 0.0) / len(frames) * 1e6}
    if replay is not None:
        result["replay_file"] = replay.name
    return result


EMULATOR_CPU = re.compile(r"inject_replay_emulator_cpu\b.*")


def emulator_feed_cpu_ms(log_text: str) -> dict[str, float]:
    """Replay file name → CPU ms the emulated chip spent taking its frames in (the
    daemon's ``inject_replay_emulator_cpu`` lines): radio-thread work a real chip does
    without the host, reported apart from the gateway's."""
    out: dict[str, float] = {}
    for match in EMULATOR_CPU.finditer(log_text):
        line = match.group(0)
        path = re.search(r"path=(\S+)", line)
        cpu = re.search(r"cpu_ms=([0-9.]+)", line)
        if path and cpu:
            out[Path(path.group(1).strip("'\"")).name] = float(cpu.group(1))
    return out


def split_emulator_cost(per_frame: dict[str, dict[str, Any]], cpu_ms: dict[str, float]) -> None:
    """Add each replayed phase's emulator share and the gateway's CPU per frame without it."""
    for phase in per_frame.values():
        name = phase.pop("replay_file", None)
        if name is None or name not in cpu_ms:
            continue
        emulator_us = cpu_ms[name] * 1e3 / phase["frames"]
        phase["emulator_feed_us_per_frame"] = emulator_us
        phase["cpu_us_per_frame_without_feed"] = phase["cpu_us_per_frame"] - emulator_us


def flood(sub: Subscriber, feed: Feed, frames: list[bytes]) -> tuple[float, list[bytes]]:
    replay = feed.prepare(frames)
    sub.reset()
    start = feed.send(frames, replay, None)
    wait_count(sub, len(frames), "the flood")
    rate = len(frames) / (sub.last_at - start)
    return rate, sub.reset()


def bare_paho(port: int, sub: Subscriber, payloads: list[bytes], inflight: int) -> float:
    """The same payloads, QoS 1, same window, same broker and subscriber: the ceiling.

    The window is kept here (a semaphore released on each PUBACK), as the daemon keeps
    its own: left to paho's internal queue, 100,000 publishes from one thread stalled."""
    sub.reset()
    window = threading.Semaphore(inflight)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare")
    client.max_inflight_messages_set(inflight)
    client.on_publish = lambda *_: window.release()
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    try:
        start = time.perf_counter()
        for payload in payloads:
            if not window.acquire(timeout=30):
                raise TimeoutError("no PUBACK for 30 s")
            client.publish(TOPIC, payload, qos=1)
        wait_count(sub, len(payloads), "the bare paho run")
        return len(payloads) / (sub.last_at - start)
    finally:
        client.disconnect()
        client.loop_stop()


def one_run(args: argparse.Namespace, devices: Devices) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        devices.provision(work)
        broker = MosquittoBroker(work / "broker")
        broker.start()
        daemon = Daemon(work, broker.port, args.inflight, args.drain_rate, args.python_flags)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sub = Subscriber(broker.port)
        try:
            daemon.start()
            time.sleep(args.settle_s)
            feed = Feed(args.feed, daemon, sock)
            result: dict[str, Any] = {"cold_start_s": daemon.cold_start_s,
                                      "rss_after_start_mb": rss_mb(daemon.pid)}
            if args.smaps:
                result["threads_after_start"] = threads(daemon.pid)
                result["smaps_after_start_mb"] = dict(
                    list(smaps_mb(daemon.pid).items())[:args.smaps])
            result["idle"] = idle(daemon.pid, args.idle_s)
            if args.idle_only:
                return result
            index = 0
            result["per_frame"] = {}
            for rate in RATES:
                count = max(int(rate * args.paced_s), 50)
                frames = [devices.frame(i) for i in range(index, index + count)]
                index += count
                result["per_frame"][f"{rate:g}_per_s"] = paced(
                    daemon, sub, feed, frames, rate, result["idle"]["cpu_percent"])
            frames = [devices.frame(i) for i in range(index, index + args.flood_frames)]
            rate, payloads = flood(sub, feed, frames)
            result["rss_after_flood_mb"] = rss_mb(daemon.pid)
            baseline = bare_paho(broker.port, sub, payloads, args.inflight)
            result["flood"] = {"frames": args.flood_frames, "daemon_frames_per_s": rate,
                               "bare_paho_frames_per_s": baseline, "ratio": rate / baseline,
                               "inflight": args.inflight}
        finally:
            sub.close()
            sock.close()
            daemon.stop()
            broker.stop()
        log_text = (work / "gateway.log").read_text()
        if "per_frame" in result:
            split_emulator_cost(result["per_frame"], emulator_feed_cpu_ms(log_text))
        errors = [line for line in log_text.splitlines() if "error" in line.lower()]
        result["daemon_error_lines"] = len(errors)
        return result


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The same shape as one run, every number replaced by its median over the runs."""
    first = runs[0]
    out: dict[str, Any] = {}
    for key, value in first.items():
        if key == "smaps_after_start_mb":  # per-run detail, its top N may differ: not a median
            continue
        if isinstance(value, dict):
            out[key] = median_of([r[key] for r in runs])
        elif isinstance(value, (int, float)):
            out[key] = statistics.median(r[key] for r in runs)
    return out


def report(m: dict[str, Any], runs: int, smaps: dict[str, float] | None = None,
           feed: str = "replay") -> None:
    print(f"median of {runs} run(s), frames fed by {feed}")
    print(f"cold start to READY=1     {m['cold_start_s']:8.2f} s")
    print(f"RSS after start           {m['rss_after_start_mb']:8.1f} MB")
    if smaps is not None:
        print(f"  of which (last run, {m['threads_after_start']:.0f} threads):")
        for name, mb in smaps.items():
            print(f"  {mb:8.1f} MB  {name}")
    print(f"idle CPU (one core)       {m['idle']['cpu_percent']:8.2f} %")
    print(f"  a bare 100 Hz waker, same window {m['idle']['bare_100hz_waker_cpu_percent']:.2f} %"
          f" (the daemon's polls add {m['idle']['over_bare_waker_cpu_percent']:.2f} %)")
    print(f"idle context switches     {m['idle']['ctx_switches_per_s']:8.0f} /s")
    if "per_frame" not in m:  # --idle-only
        return
    for name, pf in m["per_frame"].items():
        feed = ""
        if "emulator_feed_us_per_frame" in pf:
            feed = (f"; without the emulated chip's intake "
                    f"({pf['emulator_feed_us_per_frame']:.0f} us) "
                    f"{pf['cpu_us_per_frame_without_feed']:.0f} us")
        print(f"CPU per frame at {name:9s}{pf['cpu_us_per_frame']:8.0f} us "
              f"({pf['cpu_us_per_frame_net_of_idle']:.0f} us net of idle{feed})")
    f = m["flood"]
    print(f"flood {f['frames']:.0f} frames: daemon {f['daemon_frames_per_s']:.0f}/s, bare paho "
          f"{f['bare_paho_frames_per_s']:.0f}/s, ratio {f['ratio']:.2f}")
    print(f"RSS after the flood       {m['rss_after_flood_mb']:8.1f} MB")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--idle-s", type=float, default=60.0)
    ap.add_argument("--paced-s", type=float, default=10.0, help="seconds per paced rate")
    ap.add_argument("--flood-frames", type=int, default=100_000)
    ap.add_argument("--inflight", type=int, default=100, help="the daemon's mqtt.max_inflight")
    ap.add_argument("--drain-rate", type=float, default=200.0,
                    help="the daemon's buffer.drain_rate_per_s (200 is the default; 0 unpaced)")
    ap.add_argument("--settle-s", type=float, default=2.0)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--idle-only", action="store_true",
                    help="start, measure idle, stop (no traffic phases)")
    ap.add_argument("--smaps", type=int, default=0, metavar="N",
                    help="print the N largest mappings of the RSS after start")
    ap.add_argument("--python-flags", default="",
                    help='before "-m gateway" on the daemon\'s command line, e.g. "-X importtime"')
    ap.add_argument("--feed", choices=("replay", "socket"), default="replay",
                    help="replay: one control datagram per phase, the chip reads a JSON Lines "
                         "file (default); socket: one inject datagram per frame (the old way)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    devices = Devices()
    runs = [one_run(args, devices) for _ in range(args.runs)]
    medians = median_of(runs)
    report(medians, len(runs), runs[-1].get("smaps_after_start_mb"), args.feed)
    if args.json:
        args.json.write_text(json.dumps({"feed": args.feed, "median": medians, "runs": runs},
                                        indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
