"""``doctor`` for installers: firmware, boot-partition import, config readability, buffer
folder, TLS on a plain port, the TLS-files line, an unknown gateway id, a missing spidev.

Real files, a real Mosquitto, real subprocesses (one of them as an unprivileged user).
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import Config, load_config
from gateway.doctor import run_checks
from gateway.doctor_hw import concentrator_checks
from gateway.doctor_install import (
    check_boot_import,
    check_buffer_writable,
    check_firmware,
)
from gateway.doctor_result import CheckResult, ok
from gateway.service_paths import is_service_config, read_only_paths, service_writable
from hal.firmware import AGC_SX1250_FILE, ARB_FILE, SX1261_PATCH_FILE, sha256_hex
from hal.registers import MCU_FW_SIZE
from tests.support.broker import MosquittoBroker

REPO = Path(__file__).resolve().parents[1]


def no_hardware(_config: Config) -> tuple[list[CheckResult], str | None]:
    return [ok("concentrator", "faked")], "0016c001ff10a235"


def unreadable_chip(_config: Config) -> tuple[list[CheckResult], str | None]:
    return [ok("concentrator", "faked, EUI unreadable")], None


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def sx1302_config(tmp_path: Path, server: str = "mqtt://127.0.0.1:1") -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(f'[concentrator]\nbackend = "sx1302"\nspi_device = "emulator"\n'
                    f'board = "corecell"\nfirmware_dir = "fw"\n'
                    f'[mqtt]\nserver = "{server}"\n[buffer]\npath = "buffer.sqlite"\n')
    return path


def test_sx1302_without_firmware_fails_on_the_firmware_line(
        tmp_path: Path, broker: MosquittoBroker) -> None:
    path = sx1302_config(tmp_path, broker.url)
    result = subprocess.run([sys.executable, "-m", "gateway", "doctor", "-c", str(path)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    line = next(li for li in result.stdout.splitlines() if "firmware" in li.split()[1:2])
    assert line.startswith("FAIL")
    assert str(tmp_path / "fw") in line and "sudo lora-gateway firmware install" in line


def test_installed_firmware_passes(tmp_path: Path) -> None:
    images = {AGC_SX1250_FILE: b"\x01" * MCU_FW_SIZE, ARB_FILE: b"\x02" * MCU_FW_SIZE,
              SX1261_PATCH_FILE: b"\x00\x33\x7f\xe1" * 386}  # the CoreCell has an SX1261
    (tmp_path / "fw").mkdir()
    for name, data in images.items():
        (tmp_path / "fw" / name).write_bytes(data)
    config = load_config(sx1302_config(tmp_path))
    allowed = {name: frozenset({sha256_hex(data)}) for name, data in images.items()}
    result = check_firmware(config, allowed)
    assert result is not None and result.status == "ok"
    assert "SX1261 patch" in result.detail
    tampered = check_firmware(config, {**allowed, ARB_FILE: frozenset({"0" * 64})})
    assert tampered is not None and tampered.status == "fail"
    assert "not on the allow-list" in tampered.detail
    (tmp_path / "fw" / SX1261_PATCH_FILE).unlink()
    no_patch = check_firmware(config, allowed)
    assert no_patch is not None and no_patch.status == "fail"
    assert "SX1261 patch" in no_patch.detail and "firmware install" in no_patch.hint


def test_the_emulator_backend_has_no_firmware_line(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('[concentrator]\nbackend = "emulator"\n')
    assert check_firmware(load_config(path)) is None


def test_a_rejected_boot_partition_config_is_reported(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    error = tmp_path / "boot-config-error.txt"
    assert check_boot_import(error) is None
    error.write_text("config error: /boot/firmware/gateway.toml: mqtt.marshaler = 'xml' ...\n")
    monkeypatch.setattr("gateway.doctor_install.BOOT_CONFIG_ERROR", error)
    path = tmp_path / "gateway.toml"
    path.write_text('[mqtt]\nserver = "mqtt://127.0.0.1:1"\n')
    named = by_name(run_checks(path, no_hardware))
    assert named["boot-config"].status == "fail"
    assert "NOT installed" in named["boot-config"].detail
    assert "mqtt.marshaler" in named["boot-config"].detail


def _nobody() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        return None


@pytest.mark.skipif(os.geteuid() != 0 or _nobody() is None or shutil.which("setpriv") is None,
                    reason="needs root to run doctor as another user")
def test_a_normal_user_is_told_to_use_sudo_not_to_fix_a_value(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    path = tmp_path / "gateway.toml"
    path.write_text('[mqtt]\npassword = "secret"\n')
    path.chmod(0o640)
    nobody = _nobody()
    assert nobody is not None
    result = subprocess.run(
        ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups",
         sys.executable, "-m", "gateway", "doctor", "-c", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "HOME": str(tmp_path), "PYTHONPATH": str(REPO)})
    assert result.returncode == 1
    assert "sudo lora-gateway doctor" in result.stdout
    assert "fix the value named above" not in result.stdout


def test_buffer_outside_the_services_folders_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('[buffer]\npath = "/home/pi/buffer.sqlite"\n')
    result = check_buffer_writable(load_config(path))
    assert result.status == "fail" and "read-only for the service" in result.detail
    assert service_writable(Path("/var/lib/lora-gateway/buffer.sqlite"))
    assert not service_writable(Path("/var/lib/lora-gateway-other/buffer.sqlite"))
    assert not service_writable(Path("/var/lib/lora-gateway/../x/buffer.sqlite"))
    assert is_service_config(Path("/etc/lora-gateway/gateway.toml.new.XyZ"))
    assert not is_service_config(tmp_path / "gateway.toml")
    assert read_only_paths({"buffer.path": Path("/srv/b.sqlite"),
                            "keys.store": Path("/var/lib/lora-gateway/keys.sqlite")}) == [
        "buffer.path = /srv/b.sqlite is read-only for the service (ProtectSystem=strict); "
        "put it under /var/lib/lora-gateway or /run/lora-gateway"]


def test_the_buffer_folder_must_be_writable_by_the_service_user(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('[buffer]\npath = "state/buffer.sqlite"\n')
    (tmp_path / "state").mkdir(mode=0o755)
    config = load_config(path)
    nobody = _nobody()
    if nobody is None or os.geteuid() != 0:
        pytest.skip("needs the nobody account and root to own the folder")
    writable = (tmp_path,)
    refused = check_buffer_writable(config, user="nobody", writable=writable)
    assert refused.status == "fail" and "not writable by the user nobody" in refused.detail
    os.chown(tmp_path / "state", nobody.pw_uid, -1)
    assert check_buffer_writable(config, user="nobody", writable=writable).status == "ok"


def test_mqtts_on_a_plain_port_fails_at_tls_not_tcp(tmp_path: Path,
                                                    broker: MosquittoBroker) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(f'[mqtt]\nserver = "mqtts://127.0.0.1:{broker.port}"\n')
    results = run_checks(path, no_hardware)
    named = by_name(results)
    assert named["tcp"].status == "ok"
    assert named["tls"].status == "fail"
    assert "plain MQTT port" in named["tls"].hint
    assert [r.name for r in results].count("tcp") == 1


def test_tls_files_line_says_what_is_actually_set(tmp_path: Path) -> None:
    from tests.test_mqtt_tls import make_pki

    ca = make_pki(tmp_path / "pki")[0]  # a real CA: a garbage one fails (issue 13)
    path = tmp_path / "gateway.toml"
    path.write_text(f'[mqtt]\nserver = "mqtts://127.0.0.1:1"\nca_cert = "{ca}"\n')
    line = by_name(run_checks(path, no_hardware))["tls-files"]
    assert line.status == "ok"
    assert "certificate and key" not in line.detail and "no client certificate" in line.detail


def test_an_unknown_gateway_id_skips_the_round_trip_instead_of_inventing_one(
        tmp_path: Path, broker: MosquittoBroker) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(f'[mqtt]\nserver = "{broker.url}"\n')
    named = by_name(run_checks(path, unreadable_chip))
    assert named["mqtt-login"].status == "ok"
    assert named["mqtt-round-trip"].status == "warn"
    assert "0000000000000000" not in named["mqtt-round-trip"].detail
    assert "skipped" in named["mqtt-round-trip"].detail


@pytest.mark.skipif(importlib.util.find_spec("spidev") is not None,
                    reason="spidev is installed here")
def test_a_missing_spidev_module_names_the_package_not_the_spi_settings(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('[concentrator]\nbackend = "sx1302"\nspi_device = "/dev/spidev0.0"\n')
    results, eui = concentrator_checks(load_config(path))
    assert eui is None and results[0].status == "fail"
    assert "python3-spidev" in results[0].hint and "SPI/GPIO" not in results[0].hint


def test_config_check_refuses_a_buffer_the_service_cannot_write(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('[buffer]\npath = "/home/pi/buffer.sqlite"\n'
                    '[keys]\nstore = "/var/lib/lora-gateway/keys.sqlite"\n')
    check = [sys.executable, "-m", "gateway", "config", "check", str(path)]
    assert subprocess.run(check, capture_output=True, timeout=60, check=False).returncode == 0
    refused = subprocess.run([*check, "--service"], capture_output=True, text=True, timeout=60,
                             check=False)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1
    assert "buffer.path = /home/pi/buffer.sqlite is read-only for the service" in refused.stderr
