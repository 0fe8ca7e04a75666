"""``lora-gateway doctor``: in under a minute, does this box work, and if not, what to do.

Checks run in the order an installer would fix things: the boot-partition
import, the config file, the firmware, the concentrator, the clock, the backhaul
(DNS → TCP → TLS → login → round trip), the disk and the buffer. Each prints one
line (ok / warn / fail + what to do); the exit code is 1 when any check failed.
Everything works on the emulator and a local broker, so each check is tested,
failures included.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from gateway.clock import clock_synchronised
from gateway.config import Config, ConfigError, load_config
from gateway.doctor_install import (
    check_boot_import,
    check_buffer_writable,
    check_config_unreadable,
    check_firmware,
)
from gateway.doctor_net import check_backhaul
from gateway.doctor_result import CheckResult, fail, ok, warn
from gateway.doctor_servers import check_servers, server_buffers
from gateway.provision import check_tls_files
from gateway.service_paths import is_service_config
from packet_forwarder.mqtt_tls import TlsFilesError, tls_context

DISK_WARN_BYTES = 200 * 1024 * 1024
DISK_FAIL_BYTES = 20 * 1024 * 1024
MAX_TOPIC_PREFIX = 1024

ConcentratorChecks = Callable[[Config], tuple[list[CheckResult], str | None]]
"""Runs the hardware checks; returns them and the chip EUI (hex) when it could be read."""


def check_clock() -> CheckResult:
    if clock_synchronised():
        return ok("clock", "synchronised (NTP)")
    return warn("clock", "wall clock not synchronised",
                "frames are still kept and flagged clock_synced=false; check network time "
                "(timedatectl status) — a Pi has no RTC")


def check_tls(config: Config) -> list[CheckResult]:
    """The files exist, the key is private and matches, and the link can load them
    (the same loader it uses at each connect: a garbage CA is caught here, not in a
    silent retry loop)."""
    problems = check_tls_files(config.mqtt)
    m = config.mqtt
    if not problems and (m.server.startswith("mqtts://") or m.ca_cert or m.client_cert):
        try:
            tls_context(m.ca_cert, m.client_cert, m.client_key)
        except TlsFilesError as exc:
            problems.append(str(exc))
    if len(m.topic_prefix.encode()) > MAX_TOPIC_PREFIX:
        return [fail("topics", f"mqtt.topic_prefix is {len(m.topic_prefix.encode())} bytes",
                     f"keep it under {MAX_TOPIC_PREFIX} bytes (MQTT topics are short strings)")]
    if problems:
        return [fail("tls-files", p, "run `lora-gateway provision` or fix the path")
                for p in problems]
    m = config.mqtt
    if not m.server.startswith("mqtts://"):
        return []
    if m.client_cert is not None and m.client_key is not None:
        what = "CA, certificate and key present and consistent" if m.ca_cert else \
            "certificate and key present and consistent (CA: the system's store)"
    else:
        what = f"CA {m.ca_cert} present (no client certificate: password login)" if m.ca_cert \
            else "no TLS files set: the system's CA store, password login"
    return [ok("tls-files", what)]


def check_disk(path: Path) -> CheckResult:
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    text = f"{free / 1e6:.0f} MB free for {path.parent}"
    if not os.access(folder, os.W_OK):
        return fail("disk", f"{folder} is not writable", "check StateDirectory and ownership")
    if free < DISK_FAIL_BYTES:
        return fail("disk", text, "free space: the buffer cannot keep frames through an outage")
    if free < DISK_WARN_BYTES:
        return warn("disk", text, "little room for a long outage's backlog")
    return ok("disk", text)


def check_buffer(path: Path) -> CheckResult:
    """Read-only look at the store: integrity, backlog depth and age (safe while running)."""
    if not path.exists():
        return ok("buffer", f"{path} not created yet (first start creates it)")
    if not path.is_file():
        return fail("buffer", f"{path} is not a regular file: frames are kept in memory only",
                    "point buffer.path at a file in a writable directory")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
            rows, oldest = conn.execute("SELECT COUNT(*), MIN(received_ns) FROM frames").fetchone()
            has_quarantine = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'"
                                          " AND name = 'quarantine'").fetchone()
            damaged = (conn.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]
                       if has_quarantine else 0)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return fail("buffer", f"{path}: {exc}",
                    "the gateway moves a damaged store aside at its next start")
    if verdict != "ok":
        return fail("buffer", f"{path}: integrity check says {verdict}",
                    "restart the service: it keeps the damaged file and opens a fresh one")
    if damaged:
        return warn("buffer", f"{damaged} damaged rows kept in {path} (table quarantine)",
                    "inspect them with sqlite3; the gateway goes on without them")
    if rows and isinstance(oldest, int):
        age_h = (time.time_ns() - oldest) / 3.6e12
        return warn("buffer", f"{rows} frames waiting, oldest {age_h:.1f} h",
                    "a backlog drains once the broker is reachable")
    return ok("buffer", "healthy, no backlog")


def run_checks(config_path: Path, concentrator: ConcentratorChecks) -> list[CheckResult]:
    boot = check_boot_import()
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        return [*([boot] if boot else []), check_config_unreadable(config_path, exc)]
    results = [*([boot] if boot else []), ok("config", f"{config_path} valid")]
    firmware = check_firmware(config)
    results += [firmware] if firmware else []
    hardware, eui = concentrator(config)
    results += hardware
    results.append(check_clock())
    results += check_tls(config)
    gateway_id = config.gateway.id or eui
    results += check_backhaul(config.mqtt, gateway_id, config.mqtt.topic_prefix)
    results += check_servers(config, gateway_id)
    results.append(check_disk(config.buffer.path))
    if is_service_config(config_path):  # the unit's config: its sandbox applies
        results.append(check_buffer_writable(config))
    results.append(check_buffer(config.buffer.path))
    for name, path in server_buffers(config):
        result = check_buffer(path)
        results.append(dataclasses.replace(result, name=f"{name}:{result.name}"))
    return results


def report(results: list[CheckResult], as_json: bool) -> tuple[str, int]:
    code = 1 if any(r.status == "fail" for r in results) else 0
    if as_json:
        return json.dumps({"ok": code == 0, "checks": [r.as_dict() for r in results]},
                          indent=2), code
    return "\n".join(r.line() for r in results), code
