"""The ``lora-gateway`` command: run, demo, inject, config check.

Each subcommand is a small function; argparse does the parsing. Exit codes: 0 ok,
1 runtime failure, 2 bad usage or bad configuration; ``run`` exits 78 on a fault at
start (configuration, firmware, hardware) so the unit does not restart in a loop.

The subcommands kept in their own modules (``keys``, ``status``, ``provision``,
``firmware``) are imported only when chosen: ``run`` is the resident process, and every
module it imports stays in its memory for good (the key-file tools, the firmware
downloader with tarfile/zipfile, ...). ``--help`` still lists them all, from
:data:`_LAZY_COMMANDS`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import structlog

from gateway import __version__
from gateway.config import Config, ConfigError, load_config
from gateway.journald import stderr_is_journal
from gateway.log import configure_logging, secrets_from_config
from gateway.malloc_arenas import limit_malloc_arenas
from gateway.service_paths import is_service_config, read_only_paths
from gateway.start_faults import EXIT_START_FAULT, NEXT_STEP

DEFAULT_CONFIG = Path("/etc/lora-gateway/gateway.toml")
DEFAULT_KEY_STORE = Path("/var/lib/lora-gateway/keys.sqlite")
DEFAULT_KEY_FILE = Path("/var/lib/lora-gateway/master.key")
log = structlog.get_logger("gateway.cli")


def _cmd_run(args: argparse.Namespace) -> int:
    limit_malloc_arenas()  # first: before the daemon's threads each take an arena
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        problems: list[object] = [exc]
    else:
        from gateway.preflight import preflight  # what run would trip on, found first

        problems = list(preflight(config))
    if problems:
        # Under systemd "<3>" gives the line error priority (SyslogLevelPrefix=).
        prefix = "<3>" if stderr_is_journal(os.environ) else ""
        for problem in problems:
            print(f"{prefix}config error: {problem} — {NEXT_STEP}", file=sys.stderr)
        return EXIT_START_FAULT
    limiter = configure_logging(config.log.level, config.log.format,
                                secrets=secrets_from_config(config))
    from gateway.daemon import run_daemon  # after validation: a bad config starts nothing

    return run_daemon(config, limiter)


def _cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    return run_demo(duration_s=args.duration, state_dir=args.state_dir,
                    start_broker=not args.no_broker)


def _cmd_config_check(args: argparse.Namespace) -> int:
    config = _load_or_exit(args.file, for_run=True)
    if args.service or is_service_config(args.file):
        problems = read_only_paths({"buffer.path": config.buffer.path,
                                    "keys.store": config.keys.store})
        for problem in problems:
            print(f"config error: {config.source}: {problem}", file=sys.stderr)
        if problems:
            return 2
    print(f"{config.source}: ok (backend={config.concentrator.backend}, "
          f"region={config.concentrator.region}, mqtt={config.mqtt.server})")
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from gateway.doctor import report, run_checks
    from gateway.doctor_hw import concentrator_checks

    configure_logging("error", "keyvalue")  # the report is the output; no log chatter
    text, code = report(run_checks(args.config, concentrator_checks), args.json)
    print(text)
    return code


def _cmd_survey(args: argparse.Namespace) -> int:
    from gateway.survey import SurveyError, run_survey
    from hal.errors import HalError

    config = _load_or_exit(args.config)
    configure_logging("error", "keyvalue")  # the chart is the output
    try:
        print(run_survey(config, args.png, step_hz=args.step_khz * 1000, samples=args.samples))
    except (SurveyError, HalError, OSError, ValueError, ImportError) as exc:
        print(f"survey failed: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_inject(args: argparse.Namespace) -> int:
    from gateway.sim.inject import InjectError, parse_inject_datagram, send_inject

    socket_path = args.socket
    if socket_path is None:
        config = _load_or_exit(args.config)
        socket_path = config.concentrator.emulator.inject_socket
        if socket_path is None:
            print(f"{config.source}: concentrator.emulator.inject_socket is not set",
                  file=sys.stderr)
            return 2
    datagram = {"phy_payload": args.phy_payload, "frequency": args.frequency, "sf": args.sf,
                "bw": args.bw, "cr": args.cr, "rssi": args.rssi, "snr": args.snr,
                "crc_ok": not args.bad_crc}
    try:
        parse_inject_datagram(json.dumps(datagram).encode())
        send_inject(Path(socket_path), datagram)
    except InjectError as exc:
        print(f"inject: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"inject: cannot send to {socket_path}: {exc.strerror} "
              "(is `lora-gateway run` with the emulator backend running?)", file=sys.stderr)
        return 1
    return 0


def _load_or_exit(path: Path, *, for_run: bool = False) -> Config:
    """The validated config; with ``for_run`` also the places it names (see preflight)."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    if for_run:
        from gateway.preflight import preflight

        problems = preflight(config)
        for problem in problems:
            print(f"config error: {problem}", file=sys.stderr)
        if problems:
            raise SystemExit(2)
    return config


def _add_keys(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from gateway.keys_cli import add_keys_commands

    add_keys_commands(sub, default_store=DEFAULT_KEY_STORE, default_key_file=DEFAULT_KEY_FILE)


def _add_ops(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from gateway.ops_cli import add_ops_commands

    add_ops_commands(sub)


def _add_firmware(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from gateway.firmware_cli import add_firmware_commands

    add_firmware_commands(sub)


_LAZY_COMMANDS: dict[str, tuple[str, Callable[[argparse._SubParsersAction[
    argparse.ArgumentParser]], None]]] = {
    # name: (the line --help shows, what registers it in full: imported only when chosen).
    # tests/test_run_imports.py checks each line against the one its module registers.
    "keys": ("manage device keys held at the edge", _add_keys),
    "status": ("state of the running gateway (local socket)", _add_ops),
    "provision": ("create the gateway's TLS private key and a CSR", _add_ops),
    "firmware": ("Semtech AGC/ARB firmware for the SX1302", _add_firmware),
}


def _chosen_command(argv: Sequence[str]) -> str | None:
    """The subcommand named on the line: the first word that is not an option."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def _terminal_columns() -> int:
    """What ``shutil.get_terminal_size().columns`` says: $COLUMNS, else the terminal, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):  # no stdout (None), closed, not a terminal
        return 80


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, handed the width it would otherwise import ``shutil`` to learn.

    argparse builds a formatter for every ``add_argument``; without a width each one
    imports ``shutil``, and ``shutil`` loads ``zlib``, ``bz2`` and ``lzma`` with their C
    libraries: some 0.4 MB that ``run``, the resident process, would keep for nothing.
    """

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         _terminal_columns() - 2 if width is None else width)


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose default formatter is :class:`_HelpFormatter`; the
    subcommands' parsers are of this class too (``add_subparsers(parser_class=...)``
    defaults to the parent's class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; of the lazy subcommands only ``command`` in full.

    The others are one-line entries (enough for ``--help`` and for argparse to name
    them in a usage error), so their modules stay unimported.
    """
    parser = _Parser(
        prog="lora-gateway",
        description="LoRaWAN edge gateway for the SX1302: forwards to ChirpStack v4 over MQTT.",
    )
    parser.add_argument("--version", action="version", version=f"lora-gateway {__version__}")
    # Typed as argparse's own: the lazy modules register on any ArgumentParser's subparsers.
    sub = cast("argparse._SubParsersAction[argparse.ArgumentParser]",
               parser.add_subparsers(dest="command", required=True))

    run = sub.add_parser("run", help="run the gateway in the foreground")
    run.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    run.set_defaults(func=_cmd_run)

    demo = sub.add_parser("demo", help="emulated concentrator + virtual sensors + local broker")
    demo.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    demo.add_argument("--state-dir", type=Path, default=None, help="where the demo keeps files")
    demo.add_argument("--no-broker", action="store_true",
                      help="do not start a local Mosquitto (see frames kept in the buffer)")
    demo.set_defaults(func=_cmd_demo)

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate a configuration file")
    check.add_argument("file", type=Path)
    check.add_argument("--service", action="store_true",
                       help="check as the systemd service's configuration (the default for "
                            "files under /etc/lora-gateway): files it writes must be in its "
                            "writable folders")
    check.set_defaults(func=_cmd_config_check)

    chosen = _LAZY_COMMANDS.get(command or "")
    for name, (help_line, add_in_full) in _LAZY_COMMANDS.items():
        if name in sub.choices:  # registered in full with its sibling (status, provision)
            continue
        if chosen is not None and add_in_full is chosen[1]:
            add_in_full(sub)
        else:
            sub.add_parser(name, help=help_line)

    doctor = sub.add_parser("doctor", help="installer self-test: one line per check")
    doctor.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    doctor.add_argument("--json", action="store_true", help="machine-readable report")
    doctor.set_defaults(func=_cmd_doctor)

    survey = sub.add_parser("survey", help="noise floor across the band (SX1261 spectral scan)")
    survey.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    survey.add_argument("--png", type=Path, default=Path("survey.png"), help="chart file")
    survey.add_argument("--step-khz", type=int, default=200, help="frequency step")
    survey.add_argument("--samples", type=int, default=2000, help="RSSI samples per frequency")
    survey.set_defaults(func=_cmd_survey)

    inject = sub.add_parser("inject", help="send one radio packet to a running emulator")
    inject.add_argument("phy_payload", help="PHY payload as hex")
    inject.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    inject.add_argument("--socket", type=Path, default=None, help="inject socket (overrides -c)")
    inject.add_argument("--frequency", type=int, default=868_100_000)
    inject.add_argument("--sf", type=int, default=7)
    inject.add_argument("--bw", type=int, default=125_000)
    inject.add_argument("--cr", default="4/5")
    inject.add_argument("--rssi", type=float, default=-57.0)
    inject.add_argument("--snr", type=float, default=9.5)
    inject.add_argument("--bad-crc", action="store_true", help="mark the packet's CRC as bad")
    inject.set_defaults(func=_cmd_inject)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    args = build_parser(_chosen_command(words)).parse_args(words)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
