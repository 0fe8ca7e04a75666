"""Operator subcommands: ``lora-gateway status`` and ``lora-gateway provision``.

Kept apart from ``gateway/cli.py`` so the main command stays a table of contents;
``add_ops_commands`` registers both on the main parser's subparsers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.config import ConfigError, load_config
from gateway.status_server import StatusError, default_status_socket, query_status

__all__ = ["add_ops_commands", "format_status"]

DEFAULT_CONFIG = Path("/etc/lora-gateway/gateway.toml")
DEFAULT_TLS_DIR = Path("/etc/lora-gateway/tls")


def _age(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "never"
    s = int(seconds)
    if s < 120:
        return f"{seconds:.1f} s" if seconds < 10 else f"{s} s"
    if s < 7200:
        return f"{s // 60} min {s % 60} s"
    if s < 172800:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def _frame(frame: Any, now: float) -> str:
    """A frame's age and details; the daemon sends ``at_unix``, older ones sent ``age_s``."""
    if not isinstance(frame, Mapping):
        return "none yet"
    age = frame.get("age_s")
    at = frame.get("at_unix")
    if age is None and isinstance(at, int | float):
        age = max(0.0, now - at)
    parts = [f"{_age(age)} ago"]
    for key in ("device", "dev_addr", "fcnt", "frequency", "rssi", "status"):
        if frame.get(key) is not None:
            parts.append(f"{key}={frame[key]}")
    return " ".join(parts)


def format_status(status: Mapping[str, Any], now: float | None = None) -> str:
    """Readable lines for a person; every field is optional (older daemons send fewer)."""
    now = time.time() if now is None else now
    backhaul = status.get("backhaul") or {}
    counts = status.get("counts") or {}
    buffer = status.get("buffer") or {}
    duty = status.get("duty_cycle") or {}
    drops = status.get("drops") or {}
    downlink = status.get("downlink") or {}
    state = str(backhaul.get("state", "unknown"))
    lines = [
        f"gateway      {status.get('gateway_id', '?')}  (lora-gateway "
        f"{status.get('version', '?')}, up {_age(status.get('uptime_s'))})",
        f"concentrator {(status.get('concentrator') or {}).get('state', 'unknown')}",
        f"backhaul     {state}" + (f" for {_age(backhaul['since_s'])}"
                                   if backhaul.get("since_s") is not None else "")
        + (f"  {backhaul['server']}" if backhaul.get("server") else ""),
        f"last uplink  {_frame(status.get('last_uplink'), now)}",
        *([f"last downlink {_frame(status['last_downlink'], now)}"]
          if "last_downlink" in status else []),
        f"counts       {counts.get('received', '?')} received, "
        f"{counts.get('forwarded', '?')} forwarded",
        *([f"downlinks    {downlink.get('received', 0)} received, "
           f"{downlink.get('emitted', 0)} emitted, {downlink.get('queued', 0)} queued"]
          if downlink else []),
        f"buffer       {buffer.get('depth', '?')} frames waiting, oldest "
        + (f"{_age(buffer['oldest_age_s'])} old" if buffer.get("oldest_age_s") is not None
           else "-")
        + ("" if buffer.get("storage_ok", True) else "  STORAGE ERROR"),
        "drops        " + (", ".join(f"{k}={v}" for k, v in sorted(drops.items())) or "none"),
    ]
    lines += _server_lines(status.get("servers") or {})
    if duty.get("used_percent") is not None:
        lines.append(f"duty cycle   {duty['used_percent']:.2f} % of the allowed airtime used")
    return "\n".join(lines)


def _server_lines(servers: Mapping[str, Any]) -> list[str]:
    """One line per network server: state, backlog and its age, drops (daemons with servers)."""
    lines = []
    for name, s in servers.items():
        backlog = s.get("backlog", "?")
        oldest = s.get("oldest_age_s")
        dropped = sum((s.get("dropped") or {}).values())
        lines.append(f"server       {name}: {s.get('protocol', '?')} {s.get('state', 'unknown')}"
                     f"  backlog {backlog}"
                     + (f" (oldest {_age(oldest)})" if oldest is not None else "")
                     + (f"  dropped {dropped}" if dropped else "")
                     + (f"  {s['server']}" if s.get("server") else ""))
    return lines


def _cmd_status(args: argparse.Namespace) -> int:
    try:
        status = query_status(args.socket)
    except StatusError as exc:
        print(f"status: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(status, indent=2, sort_keys=True) if args.json else format_status(status))
    return 0


def _cmd_provision(args: argparse.Namespace) -> int:
    # Here, not at the top: X.509 costs every ``lora-gateway run`` ~3 MB of RSS for a
    # command used once per gateway.
    from gateway.provision import ProvisionError, gateway_eui, provision

    try:
        eui = args.eui
        if eui is None:
            config = load_config(args.config)
            eui = gateway_eui(config)
        result = provision(args.dir, eui, key_type=args.key_type, force=args.force)
    except ConfigError as exc:
        print(f"config error: {exc} (or pass --eui)", file=sys.stderr)
        return 2
    except ProvisionError as exc:
        print(f"provision: {exc}", file=sys.stderr)
        return 1
    print(f"gateway EUI  {result.eui}")
    print(f"private key  {result.key_path} (mode 0600, stays on this gateway)")
    print(f"request      {result.csr_path} (CN={result.eui}): have your CA sign it\n")
    print("Then in the [mqtt] section of the configuration:\n"
          '  server      = "mqtts://BROKER:8883"\n'
          f'  ca_cert     = "{args.dir}/ca.crt"\n'
          f'  client_cert = "{args.dir}/gateway.crt"\n'
          f'  client_key  = "{result.key_path}"')
    return 0


def add_ops_commands(subparsers: Any) -> None:
    """Register ``status`` and ``provision`` on the main parser's ``add_subparsers()`` result."""
    status = subparsers.add_parser("status", help="state of the running gateway (local socket)")
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    status.add_argument("--socket", type=Path, default=default_status_socket(),
                        help="status socket of the running service")
    status.set_defaults(func=_cmd_status)

    prov = subparsers.add_parser("provision",
                                 help="create the gateway's TLS private key and a CSR")
    prov.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    prov.add_argument("--dir", type=Path, default=DEFAULT_TLS_DIR, help="where to write")
    prov.add_argument("--eui", default=None, help="gateway EUI (default: from config or chip)")
    prov.add_argument("--key-type", choices=("ec", "rsa"), default="ec")
    prov.add_argument("--force", action="store_true", help="replace an existing key")
    prov.set_defaults(func=_cmd_provision)
