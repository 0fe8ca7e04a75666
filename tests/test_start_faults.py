"""A fault at start is one error line naming the fix, and exit status 78 (no restart loop).

Real subprocesses of ``lora-gateway run``, as systemd starts it; the unit file is
read to check that 78 is the status it does not restart on.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from gateway.start_faults import EXIT_START_FAULT, describe_start_fault
from hal.errors import ChipNotAnsweringError, FirmwareError

REPO = Path(__file__).resolve().parents[1]


def _run(config: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "run", "-c", str(config)],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, **env})


def _sx1302_config(tmp_path: Path) -> Path:
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[concentrator]\nbackend = "sx1302"\nregion = "EU868"\nfirmware_dir = "fw"\n'
        '[mqtt]\nserver = "mqtt://127.0.0.1:1"\n'
        '[buffer]\npath = "buffer.sqlite"\n[keys]\nstore = "keys.sqlite"\nkey_file = "m.key"\n'
        '[log]\nformat = "keyvalue"\n')
    return config


def test_sx1302_without_firmware_is_one_error_line_naming_the_install_command(
        tmp_path: Path) -> None:
    result = _run(_sx1302_config(tmp_path))
    assert result.returncode == EXIT_START_FAULT
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    assert len(errors) == 1, lines
    assert "start_failed" in errors[0]
    assert "lora-gateway firmware install" in errors[0]
    assert str(tmp_path / "fw") in errors[0]  # the configured folder, not a built-in one
    assert "lora-gateway doctor" in errors[0]
    assert "Traceback" not in result.stderr


def test_a_bad_configuration_exits_78_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[mqtt]\nmarshaler = "xml"\n')
    result = _run(config)
    assert result.returncode == EXIT_START_FAULT
    assert result.stderr.count("\n") == 1 and "mqtt.marshaler" in result.stderr
    assert not result.stderr.startswith("<3>")  # a terminal, not the journal


def test_the_unit_does_not_restart_on_the_start_fault_status() -> None:
    unit = (REPO / "systemd" / "lora-gateway.service").read_text()
    prevent = [line.split("=", 1)[1].split() for line in unit.splitlines()
               if line.startswith("RestartPreventExitStatus=")]
    assert [str(EXIT_START_FAULT)] in prevent or any(str(EXIT_START_FAULT) in p for p in prevent)


def test_each_fault_kind_gets_its_own_fix() -> None:
    _, fw_fix = describe_start_fault(FirmwareError("firmware file x is missing"))
    _, chip_fix = describe_start_fault(ChipNotAnsweringError("version register read 0x00"))
    _, lib_fix = describe_start_fault(ModuleNotFoundError("no spidev", name="spidev"))
    assert "firmware install" in fw_fix
    assert "seated and powered" in chip_fix
    assert "spidev" in lib_fix and "SPI settings" not in lib_fix
    assert all("doctor" in fix for fix in (fw_fix, chip_fix, lib_fix))
