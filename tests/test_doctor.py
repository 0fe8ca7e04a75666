"""``lora-gateway doctor``: each check, passing and failing, against a real local broker."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import Config
from gateway.doctor import check_buffer, check_disk, report, run_checks
from gateway.doctor_result import CheckResult, ok
from gateway.sim.local_broker import free_port
from tests.support.broker import MosquittoBroker, require_mosquitto


def no_hardware(_config: Config) -> tuple[list[CheckResult], str | None]:
    return [ok("concentrator", "faked")], "0016c001ff10a235"


def write(tmp_path: Path, server: str, extra: str = "") -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(f'[mqtt]\nserver = "{server}"\n{extra}\n'
                    f'[buffer]\npath = "buffer.sqlite"\n')
    return path


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def test_all_backhaul_checks_pass_on_a_working_broker(
    tmp_path: Path, broker: MosquittoBroker
) -> None:
    results = by_name(run_checks(write(tmp_path, broker.url), no_hardware))
    for name in ("config", "dns", "tcp", "mqtt-login", "mqtt-round-trip", "disk", "buffer"):
        assert results[name].status == "ok", results[name]
    assert report(list(results.values()), as_json=False)[1] == 0


def test_broker_down_fails_at_tcp_and_exits_1(tmp_path: Path) -> None:
    results = run_checks(write(tmp_path, f"mqtt://127.0.0.1:{free_port()}"), no_hardware)
    named = by_name(results)
    assert named["tcp"].status == "fail"
    assert "mqtt-login" not in named  # the chain stops at the real cause
    text, code = report(results, as_json=False)
    assert code == 1
    assert "FAIL  tcp" in text and "firewall" in text


def test_wrong_password_fails_login(tmp_path: Path) -> None:
    b = MosquittoBroker(tmp_path / "mq", binary=require_mosquitto(), users={"gw": "right"})
    b.start()
    try:
        path = write(tmp_path, b.url, 'username = "gw"\npassword = "wrong"')
        named = by_name(run_checks(path, no_hardware))
        assert named["tcp"].status == "ok"
        assert named["mqtt-login"].status == "fail"
        assert "password" in named["mqtt-login"].hint
        good = by_name(run_checks(write(tmp_path, b.url, 'username = "gw"\npassword = "right"'),
                                  no_hardware))
        assert good["mqtt-login"].status == "ok"
    finally:
        b.stop()


def test_unresolvable_broker_fails_at_dns(tmp_path: Path) -> None:
    named = by_name(run_checks(write(tmp_path, "mqtt://no-such-host.invalid:1883"), no_hardware))
    assert named["dns"].status == "fail"
    assert "tcp" not in named


def test_missing_tls_files_are_named(tmp_path: Path) -> None:
    extra = 'ca_cert = "ca.pem"\nclient_cert = "gw.pem"\nclient_key = "gw.key"'
    named = by_name(run_checks(write(tmp_path, f"mqtts://127.0.0.1:{free_port()}", extra),
                               no_hardware))
    assert named["tls-files"].status == "fail"
    assert "does not exist" in named["tls-files"].detail


def test_bad_config_is_the_only_line(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('[mqtt]\nmarshaler = "xml"\n')
    results = run_checks(path, no_hardware)
    assert [r.name for r in results] == ["config"]
    assert results[0].status == "fail" and "mqtt.marshaler" in results[0].detail


def test_buffer_health(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite"
    assert check_buffer(path).status == "ok"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE frames (seq INTEGER PRIMARY KEY, device TEXT, body BLOB, "
                 "received_ns INTEGER, monotonic_ns INTEGER, boot_id TEXT, "
                 "clock_synced INTEGER, size INTEGER)")
    conn.execute("INSERT INTO frames VALUES (1, 'a', x'00', 1, 1, 'b', 1, 1)")
    conn.commit()
    conn.close()
    backlog = check_buffer(path)
    assert backlog.status == "warn" and "1 frames waiting" in backlog.detail
    path.write_bytes(b"this is not a database" * 200)
    assert check_buffer(path).status == "fail"


def test_disk_check_reports_free_space(tmp_path: Path) -> None:
    result = check_disk(tmp_path / "state" / "buffer.sqlite")
    assert result.status in ("ok", "warn")
    assert "MB free" in result.detail


@pytest.mark.parametrize("as_json", [True, False])
def test_doctor_command_on_the_emulator(tmp_path: Path, broker: MosquittoBroker,
                                        as_json: bool) -> None:
    path = write(tmp_path, broker.url)
    args = [sys.executable, "-m", "gateway", "doctor", "-c", str(path)]
    result = subprocess.run(args + (["--json"] if as_json else []), capture_output=True,
                            text=True, timeout=60)
    if as_json:
        doc = json.loads(result.stdout)
        names = {c["name"]: c["status"] for c in doc["checks"]}
        assert names["mqtt-round-trip"] == "ok"
        assert names["chip"] == names["eui"] == names["counter"] == "ok"
    else:
        assert "OK    mqtt-login" in result.stdout
    assert result.returncode == 0, result.stdout + result.stderr  # a clock warning is no failure


def test_doctor_on_an_emulated_corecell_reports_chip_eui_model_counter_temperature(
    tmp_path: Path, broker: MosquittoBroker
) -> None:
    path = write(tmp_path, broker.url,
                 extra="")
    path.write_text(path.read_text() + '[concentrator]\nbackend = "sx1302"\n'
                    'spi_device = "emulator"\nboard = "corecell"\n')
    result = subprocess.run([sys.executable, "-m", "gateway", "doctor", "-c", str(path),
                             "--json"], capture_output=True, text=True, timeout=60)
    names = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert names["chip"]["status"] == "ok" and "0x10" in names["chip"]["detail"]
    assert names["eui"]["status"] == "ok"
    assert names["model"]["detail"] in ("SX1302", "SX1303")
    assert names["counter"]["status"] == "ok"
    assert "temperature" in names


def test_doctor_with_a_silent_chip_prints_the_clear_error(
    tmp_path: Path, broker: MosquittoBroker
) -> None:
    path = write(tmp_path, broker.url)
    path.write_text(path.read_text() + '[concentrator]\nbackend = "sx1302"\n'
                    'spi_device = "emulator"\nboard = "corecell"\n'
                    '[concentrator.emulator]\nfault = "no_answer"\n')
    result = subprocess.run([sys.executable, "-m", "gateway", "doctor", "-c", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert ("FAIL  chip             no answer from the concentrator on emulator — check SPI is "
            "enabled and the reset pin") in result.stdout
