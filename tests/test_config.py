"""Configuration: a wrong value stops with one line naming file, key, value and what is allowed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import ConfigError, demo_config_text, load_config, load_config_text


def check(text: str, tmp_path: Path) -> ConfigError:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value


def test_demo_config_is_valid(tmp_path: Path) -> None:
    config = load_config_text(demo_config_text(), source="demo", base_dir=tmp_path)
    assert config.concentrator.backend == "emulator"
    assert len(config.concentrator.emulator.sensors) >= 3
    assert config.buffer.path == tmp_path / "buffer.sqlite"


def test_defaults_from_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.toml"
    path.write_text("")
    config = load_config(path)
    assert config.mqtt.marshaler == "protobuf"
    assert config.mqtt.server == "mqtt://127.0.0.1:1883"
    assert config.buffer.commit_interval_s == 1.0
    assert config.gateway.id is None


@pytest.mark.parametrize(
    ("text", "key", "allowed"),
    [
        ('[mqtt]\nmarshaler = "xml"', "mqtt.marshaler", "one of 'protobuf', 'json'"),
        ('[mqtt]\nserver = "http://x"', "mqtt.server", "mqtt://HOST[:PORT]"),
        ('[gateway]\nid = "0016c001"', "gateway.id", "16 hex digits"),
        ('[concentrator]\nbackend = "sx1301"', "concentrator.backend", "'emulator', 'sx1302'"),
        ("[buffer]\ncommit_interval_s = 0", "buffer.commit_interval_s", "a number from"),
        ('[buffer]\nmax_size_mb = "big"', "buffer.max_size_mb", "a number from"),
        ("[mqtt]\nkeepalive_s = 2.5", "mqtt.keepalive_s", "an integer from 5"),
        ('[mqtt]\nservr = "mqtt://x"', "mqtt.servr", "unknown key"),
        ("[forwarder]\nforward_crc_error = 1", "forwarder.forward_crc_error", "true or false"),
        ('[[concentrator.emulator.sensors]]\nname = "a"\ndev_addr = "zz"',
         "concentrator.emulator.sensors[0].dev_addr", "8 hex digits"),
        ('[mqtt]\nclient_cert = "c.pem"', "mqtt.client_key", "go together"),
    ],
)
def test_bad_value_names_key_value_and_allowed(
    tmp_path: Path, text: str, key: str, allowed: str
) -> None:
    err = check(text, tmp_path)
    message = str(err)
    assert message.startswith(str(tmp_path / "gateway.toml"))
    assert f" {key} = " in message
    assert allowed in message
    assert "\n" not in message


def test_bad_toml_syntax(tmp_path: Path) -> None:
    err = check("[mqtt\nserver=", tmp_path)
    assert "not valid TOML" in str(err)


def test_relative_paths_follow_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('[buffer]\npath = "state/b.sqlite"\n')
    assert load_config(path).buffer.path == tmp_path / "state" / "b.sqlite"


def test_config_check_command_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('[mqtt]\nmarshaler = "xml"\n')
    result = subprocess.run([sys.executable, "-m", "gateway", "config", "check", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [f"config error: {path}: mqtt.marshaler = 'xml': one of 'protobuf', 'json'"]


def test_run_with_bad_config_exits_78_without_starting(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text("[buffer]\ndrain_rate_per_s = -1\n")
    result = subprocess.run([sys.executable, "-m", "gateway", "run", "-c", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 78  # RestartPreventExitStatus= in the unit: no restart loop
    assert "buffer.drain_rate_per_s = -1" in result.stderr
    assert not (tmp_path / "buffer.sqlite").exists()


def test_downlink_defaults_and_regions(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text("")
    config = load_config(path)
    d = config.downlink
    assert (d.load_margin_us, d.min_lead_us, d.immediate_lead_us) == (40_000, 30_000, 80_000)
    assert d.guard_us > config.concentrator.poll_interval_s * 1e6
    assert d.plan_file is None and config.concentrator.sub_band is None
    path.write_text('[concentrator]\nregion = "US915"\nsub_band = 2\n')
    assert load_config(path).concentrator.sub_band == 2


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[concentrator]\nregion = "EU868"\nsub_band = 2\n', "concentrator.sub_band"),
        ('[concentrator]\nregion = "US915"\nsub_band = 9\n', "concentrator.sub_band"),
        ('[concentrator]\npoll_interval_s = 0.02\n[downlink]\nguard_ms = 10\n',
         "downlink.guard_ms"),
        ("[downlink]\nload_margin_ms = 5\n", "downlink.load_margin_ms"),
        ("[downlink]\nimmediate_lead_ms = 20\n", "downlink.immediate_lead_ms"),
        ('[concentrator]\nregion = "XX999"\n', "concentrator.region"),
    ],
)
def test_downlink_settings_that_cannot_work_are_refused(text: str, key: str,
                                                        tmp_path: Path) -> None:
    error = check(text, tmp_path)
    assert key in str(error)
