"""Where the running daemon's resident memory goes: interpreter, libraries, our code, state.

Starts a real Mosquitto and the real daemon as ``bench/sobriety.py`` does (emulator
backend, the same 500-device key store), with ``-X importtime`` so its log lists every
module ``run`` imported, and reads its RSS after start. Then a fresh interpreter imports
those very modules in stages and prints the resident memory (anonymous and file-backed,
from ``/proc/self/status``) each stage adds:

* the interpreter and ``site`` alone;
* the standard library modules the daemon holds (its own and those its libraries pull);
* each third-party distribution (structlog, protobuf + chirpstack-api, cryptography,
  paho-mqtt), in that order;
* our packages, then the emulator's modules (``hal.emulator``, ``gateway.sim``, the
  emulated backend: on real hardware the SPI backend stands in their place);
* what is left, the daemon's RSS after start minus all of the above: its run-time state
  (key store index, SQLite connections, threads, buffers) and the library pages first
  touched after start.

File-backed pages (shared libraries) are clean and shared with the page cache; the
anonymous ones are the process's own. Run from the repository root::

    python bench/memory_breakdown.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sobriety  # the daemon and the key store, made as the sobriety bench makes them

from tests.support.broker import MosquittoBroker

OURS = ("gateway", "hal", "packet_forwarder", "buffer", "hardware", "common")
EMULATOR = ("hal.emulator", "gateway.sim", "hal.backends.emulated")
THIRD = {"structlog": "structlog", "google": "protobuf + chirpstack-api",
         "chirpstack_api": "protobuf + chirpstack-api", "cryptography": "cryptography",
         "_cffi_backend": "cryptography", "paho": "paho-mqtt"}

# Imports the module list (argv[1], JSON) stage by stage; prints one JSON line per stage.
# The urllib.request stand-in goes in first, as the daemon has it before paho-mqtt.
CHILD = """
import importlib, json, sys
def status():
    out = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) * 1024 / 1e6
    return out
print(json.dumps(["interpreter and site", status()]), flush=True)
import packet_forwarder.lazy_urllib
for name, modules in json.loads(sys.argv[1]):
    for module in modules:
        if module not in sys.modules:
            try:
                importlib.import_module(module)
            except ImportError:
                pass  # an optional import the daemon tried and went without
    print(json.dumps([name, status()]), flush=True)
"""


def run_daemon(work: Path) -> tuple[float, list[str]]:
    """RSS after start (MB, as sobriety.py reports it) and the modules the daemon imported,
    in the order ``-X importtime`` lists them (each after the modules it imported)."""
    sobriety.Devices().provision(work)
    broker = MosquittoBroker(work / "broker")
    broker.start()
    daemon = sobriety.Daemon(work, broker.port, 100, 200.0, "-X importtime")
    try:
        daemon.start()
        time.sleep(2.0)
        rss = sobriety.rss_mb(daemon.pid)
    finally:
        daemon.stop()
        broker.stop()
    modules = []
    for line in (work / "gateway.log").read_text(errors="replace").splitlines():
        if line.startswith("import time:") and not line.endswith("imported package"):
            modules.append(line.rsplit("|", 1)[1].strip())
    return rss, modules


def stages(modules: list[str]) -> list[tuple[str, list[str]]]:
    def top(m: str) -> str:
        return m.split(".")[0]

    ours = [m for m in modules if top(m) in OURS]
    emulator = [m for m in ours if m.startswith(EMULATOR)]
    third = [m for m in modules if top(m) in THIRD]
    stdlib = [m for m in modules if m not in ours and m not in third]
    out = [("standard library", stdlib)]
    for dist in dict.fromkeys(THIRD.values()):
        out.append((dist, [m for m in third if THIRD[top(m)] == dist]))
    out.append(("our code", [m for m in ours if m not in emulator]))
    out.append(("the emulator's code", emulator))
    return out


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        rss, modules = run_daemon(Path(tmp))
    child = subprocess.run([sys.executable, "-c", CHILD, json.dumps(stages(modules))],
                           capture_output=True, text=True, check=True, cwd=root)
    rows = [json.loads(line) for line in child.stdout.splitlines()]
    print(f"daemon RSS after start: {rss:.1f} MB ({len(modules)} modules imported)")
    print(f"{'':32s}{'RSS':>8s}{'anon':>8s}{'file':>8s}  (MB added)")
    previous = {"VmRSS": 0.0, "RssAnon": 0.0, "RssFile": 0.0}
    for name, now in rows:
        added = {k: now[k] - previous[k] for k in previous}
        print(f"{name:32s}{added['VmRSS']:8.1f}{added['RssAnon']:8.1f}{added['RssFile']:8.1f}")
        previous = now
    print(f"{'run-time state (the rest)':32s}{rss - previous['VmRSS']:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
