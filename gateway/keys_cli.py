"""``lora-gateway keys import|list|remove``: manage the edge key store by hand.

Run it as the service user (``sudo -u lora-gateway lora-gateway keys ...``) so that the
master key file it creates on first import belongs to the daemon's user. A running
daemon picks the changes up at its next counter flush (it watches the file's version).
Exit codes: 0 ok, 1 store or key-file failure, 2 bad usage or a bad import file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from packet_forwarder.keystore import (
    ImportFileError,
    KeyStore,
    KeyStoreError,
    RecordError,
    session_public,
)
from packet_forwarder.keystore.importer import read_import_file
from packet_forwarder.keystore.records import parse_hex


def add_keys_commands(
    subparsers: argparse._SubParsersAction[Any],
    *,
    default_store: Path | None = None,
    default_key_file: Path | None = None,
) -> None:
    """Register ``keys`` and its three subcommands on the top-level parser."""
    keys = subparsers.add_parser("keys", help="manage device keys held at the edge")
    sub = keys.add_subparsers(dest="keys_command", required=True)

    imp = sub.add_parser("import", help="import sessions/root keys from CSV or JSON")
    imp.add_argument("file", type=Path)
    imp.add_argument("--format", choices=("csv", "json"), default=None,
                     help="default: from the file name (.json, else CSV)")
    imp.set_defaults(func=_cmd_import)

    lst = sub.add_parser("list", help="list devices (never shows keys)")
    lst.add_argument("--json", action="store_true", help="one JSON document")
    lst.set_defaults(func=_cmd_list)

    rm = sub.add_parser("remove", help="remove a device's session and root keys")
    rm.add_argument("dev_eui")
    rm.set_defaults(func=_cmd_remove)

    for parser in (imp, lst, rm):
        parser.add_argument("--store", type=Path, default=default_store,
                            help="key store file (SQLite)")
        parser.add_argument("--key-file", type=Path, default=default_key_file,
                            help="master key file (created 0600 on first import)")


def _open(args: argparse.Namespace, *, must_exist: bool) -> KeyStore | int:
    if args.store is None or args.key_file is None:
        print("keys: --store and --key-file are required", file=sys.stderr)
        return 2
    if must_exist and not args.store.exists():
        print(f"keys: no key store at {args.store}", file=sys.stderr)
        return 1
    try:
        return KeyStore(args.store, args.key_file)
    except KeyStoreError as exc:
        print(f"keys: {exc}", file=sys.stderr)
        return 1


def _cmd_import(args: argparse.Namespace) -> int:
    try:
        rows = read_import_file(args.file, args.format)
    except ImportFileError as exc:
        print(f"keys import: {args.file}: {exc}", file=sys.stderr)
        return 2
    except (OSError, UnicodeDecodeError) as exc:
        print(f"keys import: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    store = _open(args, must_exist=False)
    if isinstance(store, int):
        return store
    try:
        applied = store.apply(rows.sessions, rows.roots)
    except KeyStoreError as exc:
        print(f"keys import: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    unchanged = len(rows.sessions) + len(rows.roots) - len(applied.stored) - len(applied.roots)
    print(f"imported {len(applied.stored)} session(s) and {len(applied.roots)} root key(s) "
          f"into {args.store} ({unchanged} unchanged)")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    store = _open(args, must_exist=True)
    if isinstance(store, int):
        return store
    try:
        loaded = store.load()
    except KeyStoreError as exc:
        print(f"keys list: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    entries: list[dict[str, Any]] = [
        {"kind": "session", **session_public(s.session)} for s in loaded.sessions
    ]
    entries += [{"kind": "root", "dev_eui": r.dev_eui, "join_eui": r.join_eui,
                 "mac_version": r.mac_version} for r in loaded.roots]
    entries += [{"kind": name.split(":")[0], "dev_eui": name.split(":")[1], "damaged": True}
                for name in loaded.rejected]
    entries.sort(key=lambda e: (str(e["dev_eui"]), str(e["kind"])))
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    print(f"{'KIND':8} {'DEV_EUI':16} {'DEV_ADDR':8} {'VERSION':7} {'F_CNT_UP':>10}  NOTE")
    for e in entries:
        fcnt = e.get("f_cnt_up")
        note = "DAMAGED: cannot be decrypted" if e.get("damaged") else (
            f"join_eui {e['join_eui']}" if e.get("join_eui") else "")
        print(f"{e['kind']:8} {e['dev_eui']:16} {e.get('dev_addr') or '-':8} "
              f"{e.get('mac_version') or '-':7} {'-' if fcnt is None else fcnt:>10}  {note}")
    return 0


def _cmd_remove(args: argparse.Namespace) -> int:
    try:
        dev_eui = parse_hex(args.dev_eui, "dev_eui", 8).hex()
    except RecordError as exc:
        print(f"keys remove: {exc}", file=sys.stderr)
        return 2
    store = _open(args, must_exist=True)
    if isinstance(store, int):
        return store
    try:
        applied = store.apply(remove=[dev_eui])
    except KeyStoreError as exc:
        print(f"keys remove: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    if not applied.removed:
        print(f"keys remove: {dev_eui} is not in {args.store}", file=sys.stderr)
        return 1
    print(f"removed {dev_eui}")
    return 0
