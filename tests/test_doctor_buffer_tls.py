"""``config check`` / ``doctor`` read the TLS files and the buffer path as the gateway will."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.doctor import check_buffer, run_checks
from tests.test_doctor import by_name, no_hardware


def write(tmp_path: Path, mqtt: str, buffer_path: str = "buffer.sqlite") -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(f'[mqtt]\n{mqtt}\n[buffer]\npath = "{buffer_path}"\n')
    return path


@pytest.mark.parametrize("content", [None, "garbage, not PEM\n"])
def test_bad_ca_file_fails_config_check(tmp_path: Path, content: str | None) -> None:
    ca = tmp_path / "ca.pem"
    if content is not None:
        ca.write_text(content)
    config = write(tmp_path, f'server = "mqtts://127.0.0.1:1"\nca_cert = "{ca}"')
    result = by_name(run_checks(config, no_hardware))["tls-files"]
    assert result.status == "fail" and str(ca) in result.detail


def test_oversize_topic_prefix_fails_config_check(tmp_path: Path) -> None:
    config = write(tmp_path, f'server = "mqtt://127.0.0.1:1"\ntopic_prefix = "{"p" * 2000}"')
    assert by_name(run_checks(config, no_hardware))["topics"].status == "fail"


@pytest.mark.parametrize("kind", ["directory", "devnull"])
def test_buffer_path_that_is_not_a_file_fails(tmp_path: Path, kind: str) -> None:
    if kind == "directory":
        path = tmp_path / "b.sqlite"
        path.mkdir()
    else:
        path = Path(os.devnull)
    result = check_buffer(path)
    assert result.status == "fail" and "memory only" in result.detail
    config = write(tmp_path, 'server = "mqtt://127.0.0.1:1"', str(path))
    assert by_name(run_checks(config, no_hardware))["buffer"].status == "fail"


def test_quarantined_rows_are_a_warning(tmp_path: Path) -> None:
    from buffer.store import FrameStore
    from buffer.types import UplinkRecord

    path = tmp_path / "b.sqlite"
    store = FrameStore(path)
    store.open()
    store.quarantine_records([(UplinkRecord(1, "d", b"\xff", 1, 1, "boot", True), "bad body")])
    store.close()
    result = check_buffer(path)
    assert result.status == "warn" and "1 damaged rows" in result.detail
