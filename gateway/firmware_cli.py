"""``lora-gateway firmware install``: the argparse side of :mod:`gateway.firmware_install`.

The target folder is ``--dir`` if given, else the configuration's
``concentrator.firmware_dir`` (so the daemon finds exactly what was written),
else the default under the state folder when there is no configuration file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gateway.config import ConfigError, load_config
from gateway.firmware_install import (
    DEFAULT_FIRMWARE_DIR,
    RELEASE_URL,
    FirmwareInstallError,
    install_firmware,
)

DEFAULT_CONFIG = Path("/etc/lora-gateway/gateway.toml")


def _target_dir(args: argparse.Namespace) -> Path:
    if args.dir is not None:
        return Path(args.dir)
    if not args.config.exists():
        return DEFAULT_FIRMWARE_DIR
    config = load_config(args.config)
    return config.concentrator.firmware_dir or DEFAULT_FIRMWARE_DIR


def _cmd_install(args: argparse.Namespace) -> int:
    try:
        target = _target_dir(args)
    except ConfigError as exc:
        print(f"firmware install: config error: {exc} (or name the folder with --dir)",
              file=sys.stderr)
        return 2
    try:
        result = install_firmware(target, archive=args.archive, url=args.url)
    except FirmwareInstallError as exc:
        print(f"firmware install: {exc}", file=sys.stderr)
        return 1
    for path in result.written:
        print(f"installed {path}")
    for reason in result.skipped:
        print(f"not installed: {reason}")
    return 0


def add_firmware_commands(sub: Any) -> None:
    """Register ``firmware install`` on the main parser's subparsers."""
    firmware = sub.add_parser("firmware", help="Semtech AGC/ARB firmware for the SX1302")
    firmware_sub = firmware.add_subparsers(dest="firmware_command", required=True)
    install = firmware_sub.add_parser(
        "install", help="extract the allow-listed images from the sx1302_hal release")
    install.add_argument("--archive", type=Path, default=None,
                         help="the sx1302_hal release archive (.tar.gz or .zip) already on disk; "
                              "default: download it")
    install.add_argument("--url", default=RELEASE_URL, help="where to download the archive from")
    install.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG,
                         help="read concentrator.firmware_dir from this file")
    install.add_argument("--dir", type=Path, default=None,
                         help="write here instead of the configured firmware_dir")
    install.set_defaults(func=_cmd_install)
