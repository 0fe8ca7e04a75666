"""What the resident process leaves unimported: every module ``run`` loads stays in RAM.

A running daemon (emulator backend, MQTT up, edge key store open) is asked for its
``sys.modules`` and must not hold the tools of the other subcommands, nor the standard
library they drag in. The CLI registers those subcommands only when chosen, yet
``--help`` still lists each with the line its own module gives it.

paho-mqtt's ``urllib.request`` (with ``http.client``, ``email``, ``tempfile``) may be in
``sys.modules`` only as the stand-in ``packet_forwarder.lazy_urllib`` puts there, never
executed. Not listed: ``ssl`` (asyncio and paho import it); the daemon cannot leave it out.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway import cli
from gateway.status_server import StatusError, query_status
from tests.support.broker import MosquittoBroker
from tests.support.gateway_proc import wait_for, write_config

NOT_AT_RUN = (
    "gateway.keys_cli", "gateway.ops_cli", "gateway.firmware_cli", "gateway.firmware_install",
    "gateway.provision", "gateway.doctor", "gateway.survey", "gateway.demo",
    "hal.doctor_checks", "ctypes.util", "importlib.resources", "zipfile", "tarfile",
    # only with a [[server]] that speaks Semtech UDP (this configuration has none)
    "gateway.udp_uplink_sink", "packet_forwarder.semtech_udp.link",
    "packet_forwarder.semtech_udp.downlink",
    # what a real urllib.request imports (paho-mqtt's only use of it is its proxy support)
    "http.client", "email.parser", "email.message", "email.feedparser", "tempfile",
    # what shutil imports; argparse's formatter would import it to learn the terminal width
    "shutil", "bz2", "lzma",
    # the key file reader is for ``keys import`` only
    "packet_forwarder.keystore.importer", "csv",
)

# The daemon's own ``run``, plus a SIGUSR1 handler that writes sys.modules to a file.
CHILD = """
import json, signal, sys
from pathlib import Path

out = Path(sys.argv[1])

def dump(*_):
    request = sys.modules.get("urllib.request")
    executed = request is not None and "urlopen" in vars(request)
    out.write_text(json.dumps({"modules": sorted(sys.modules),
                               "urllib_request_executed": executed}))

signal.signal(signal.SIGUSR1, dump)
from gateway.cli import main
sys.exit(main(["run", "-c", sys.argv[2]]))
"""


def _backhaul_up(status_socket: Path) -> bool:
    try:
        return bool(query_status(status_socket)["backhaul"]["state"] == "up")
    except (StatusError, KeyError):
        return False


def test_running_daemon_has_not_imported_the_other_commands(
        tmp_path: Path, broker: MosquittoBroker) -> None:
    config = write_config(tmp_path, broker.port, edge='unknown_devaddr = "forward"')
    dump = tmp_path / "modules.json"
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    with (tmp_path / "gateway.log").open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(dump), str(config)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, cwd=tmp_path)
    try:
        wait_for(lambda: _backhaul_up(tmp_path / "status.sock") or proc.poll() is not None,
                 30, "the daemon's backhaul")
        assert proc.poll() is None, (tmp_path / "gateway.log").read_text()
        proc.send_signal(signal.SIGUSR1)
        wait_for(dump.exists, 10, "the module list")
        time.sleep(0.1)  # the file is written in one call; let it finish
        dumped = json.loads(dump.read_text())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    modules = set(dumped["modules"])
    assert "gateway.daemon" in modules and "packet_forwarder.keystore" in modules
    assert dumped["urllib_request_executed"] is False
    assert sorted(m for m in NOT_AT_RUN if m in modules) == []
    assert not any(m.startswith("email.mime") for m in modules)


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport json, sys\n"
                          "print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_help_lists_every_command_without_importing_their_modules() -> None:
    modules = _modules_after("from gateway.cli import build_parser\n"
                             "build_parser().format_help()")
    assert {"gateway.keys_cli", "gateway.ops_cli", "gateway.firmware_cli"}.isdisjoint(modules)
    text = cli.build_parser().format_help()
    for name in ("run", "demo", "config", "keys", "status", "provision", "firmware", "doctor",
                 "survey", "inject"):
        assert f"    {name} " in text


@pytest.mark.parametrize("command", sorted(cli._LAZY_COMMANDS))
def test_lazy_command_lines_match_their_modules(command: str) -> None:
    """The one-line entry --help shows is the line the module registers in full."""
    assert cli.build_parser(command).format_help() == cli.build_parser().format_help()


@pytest.mark.parametrize(("argv", "func_module"), [
    (["keys", "list", "--store", "s", "--key-file", "k"], "gateway.keys_cli"),
    (["status", "--json"], "gateway.ops_cli"),
    (["provision", "--eui", "0016c001ff10a235"], "gateway.ops_cli"),
    (["firmware", "install", "--dir", "fw"], "gateway.firmware_cli"),
])
def test_chosen_lazy_command_is_parsed_in_full(argv: list[str], func_module: str) -> None:
    args = cli.build_parser(cli._chosen_command(argv)).parse_args(argv)
    assert args.func.__module__ == func_module


def test_unknown_command_is_still_one_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["bogus"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'bogus'" in err and "'keys'" in err


@pytest.mark.parametrize("columns", ["57", "133", "", "not a number"])
def test_help_is_as_wide_as_argparse_would_make_it(
        columns: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The formatter that spares ``shutil`` wraps help exactly as argparse's own."""
    import shutil

    monkeypatch.setenv("COLUMNS", columns)
    ours = cli._HelpFormatter("lora-gateway")
    stock = argparse.HelpFormatter("lora-gateway")
    assert ours._width == stock._width == shutil.get_terminal_size().columns - 2
    assert ours._max_help_position == stock._max_help_position
    parser = cli.build_parser("keys")
    assert isinstance(parser, cli._Parser)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert all(isinstance(p, cli._Parser) for p in sub.choices.values())
    assert parser.format_help() == cli.build_parser().format_help()
