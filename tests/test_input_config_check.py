"""Issue 16 point 7: whatever ``run`` would trip on, ``config check`` finds first, and both
say it in the same one line (exit 2, no traceback)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.start_faults import EXIT_START_FAULT
from tests.support.gateway_proc import write_config


def _port(port: int) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        return write_config(tmp, port)
    return make


def _binary(tmp: Path) -> Path:
    path = tmp / "gateway.toml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    return path


def _inject_folder_is_a_file(tmp: Path) -> Path:
    (tmp / "blocker").write_text("not a folder")
    return write_config(tmp, 1883, concentrator__emulator='inject_socket = "blocker/inject.sock"')


def _inject_path_too_long(tmp: Path) -> Path:
    return write_config(tmp, 1883,
                        concentrator__emulator=f'inject_socket = "{"d" * 120}/inject.sock"')


def _missing_secret(tmp: Path) -> Path:
    return write_config(tmp, 1883, keys='sync_secret_file = "absent.secret"')


def _buffer_is_a_folder(tmp: Path) -> Path:
    (tmp / "frames.sqlite").mkdir()
    return write_config(tmp, 1883, buffer='path = "frames.sqlite"')


def _buffer_is_dev_null(tmp: Path) -> Path:
    return write_config(tmp, 1883, buffer='path = "/dev/null"')


def _key_store_is_a_folder(tmp: Path) -> Path:
    (tmp / "keys-dir.sqlite").mkdir()
    return write_config(tmp, 1883, keys='store = "keys-dir.sqlite"')


CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "port_99999": (_port(99999), "mqtt.server = 'mqtt://127.0.0.1:99999': the port must be"),
    "port_0": (_port(0), "mqtt.server = 'mqtt://127.0.0.1:0': the port must be"),
    "binary_file": (_binary, "(file) = "),
    "inject_folder_is_a_file": (_inject_folder_is_a_file,
                                "concentrator.emulator.inject_socket = "),
    "inject_path_too_long": (_inject_path_too_long, "a socket path may be at most 107 bytes"),
    "missing_sync_secret": (_missing_secret, "keys.sync_secret_file = "),
    # issue 13: a buffer that could only live in memory is refused, never silent
    "buffer_is_a_folder": (_buffer_is_a_folder, "buffer.path = "),
    "buffer_is_dev_null": (_buffer_is_dev_null, "buffer.path = '/dev/null': exists and is not"),
    "key_store_is_a_folder": (_key_store_is_a_folder, "keys.store = "),
}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("name", sorted(CASES))
def test_config_check_and_run_refuse_the_same_way(name: str, tmp_path: Path) -> None:
    make, expected = CASES[name]
    path = make(tmp_path)
    check, run = _cli("config", "check", str(path)), _cli("run", "-c", str(path))
    assert (check.returncode, run.returncode) == (2, EXIT_START_FAULT), run.stderr[-2000:]
    for result in (check, run):
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("config error: "), lines[:5]
        assert expected in lines[0]
    # run says the same, followed by the next step for whoever reads the journal
    assert run.stderr.startswith(check.stderr.rstrip("\n") + " — ")
    assert not (tmp_path / "buffer.sqlite").exists()


def test_a_good_config_passes_the_check(tmp_path: Path) -> None:
    result = _cli("config", "check", str(write_config(tmp_path, 1883)))
    assert result.returncode == 0 and ": ok (" in result.stdout
