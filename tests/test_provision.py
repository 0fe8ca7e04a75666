"""Provisioning: private key 0600 whatever the umask, CSR for the gateway EUI, TLS file checks."""

from __future__ import annotations

import argparse
import datetime
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.config import Config, load_config_text
from gateway.ops_cli import add_ops_commands
from gateway.provision import ProvisionError, check_tls_files, gateway_eui, provision

EUI = "0016c001ff10a235"


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)  # the worst case: files would be world-writable by default
    yield
    os.umask(old)


def test_key_is_private_and_csr_names_the_gateway(tmp_path: Path, open_umask: None) -> None:
    result = provision(tmp_path / "tls", EUI.upper())
    assert stat.S_IMODE(result.key_path.stat().st_mode) == 0o600
    csr = x509.load_pem_x509_csr(result.csr_path.read_bytes())
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == EUI
    key = serialization.load_pem_private_key(result.key_path.read_bytes(), password=None)
    assert csr.public_key() == key.public_key()


def test_an_existing_key_is_kept_unless_forced(tmp_path: Path) -> None:
    first = provision(tmp_path, EUI)
    before = first.key_path.read_bytes()
    with pytest.raises(ProvisionError, match="exists"):
        provision(tmp_path, EUI)
    assert first.key_path.read_bytes() == before
    second = provision(tmp_path, EUI, force=True, key_type="rsa")
    assert second.key_path.read_bytes() != before
    assert stat.S_IMODE(second.key_path.stat().st_mode) == 0o600


def test_bad_eui_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ProvisionError, match="16 hex digits"):
        provision(tmp_path, "nothex")
    assert not (tmp_path / "gateway.key").exists()


def _config(text: str, base: Path) -> Config:
    return load_config_text(text, source="t.toml", base_dir=base)


def test_eui_comes_from_config_then_emulator_then_chip(tmp_path: Path) -> None:
    assert gateway_eui(_config(f'[gateway]\nid = "{EUI}"', tmp_path)) == EUI
    emu = _config('[concentrator]\nbackend = "emulator"\n[concentrator.emulator]\n'
                  'eui = "AA00000000000001"', tmp_path)
    assert gateway_eui(emu) == "aa00000000000001"
    chip = _config('[concentrator]\nbackend = "sx1302"', tmp_path)
    assert gateway_eui(chip, read_chip=lambda: bytes.fromhex(EUI)) == EUI

    def busy() -> bytes:
        raise OSError(16, "Device or resource busy")

    with pytest.raises(ProvisionError, match="stop the service"):
        gateway_eui(chip, read_chip=busy)


def test_usb_board_eui_is_read_through_its_mcu(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A USB concentrator has no SPI bus on the Pi: its EUI comes over the MCU's serial link."""
    from hal.backends import usb
    from hal.emulator.chip import Sx1302Emulator
    from hal.emulator.usb_mcu import EmulatedUsbMcu
    from hardware.board import get_board

    chip = Sx1302Emulator(eui=bytes.fromhex("0123456789abcdef"), board=get_board("emulator"))
    mcu = EmulatedUsbMcu(chip)
    opened: list[str] = []

    def serial_port(device: str) -> EmulatedUsbMcu:
        opened.append(device)
        return mcu

    monkeypatch.setattr(usb, "open_serial", serial_port)
    config = _config('[concentrator]\nbackend = "sx1302_usb"\nusb_device = "/dev/ttyACM3"\n'
                     'spi_device = "/dev/does-not-exist"', tmp_path)
    assert gateway_eui(config) == "0123456789abcdef"
    assert opened == ["/dev/ttyACM3"]
    assert mcu.requests > 3  # ping, power/reset GPIO writes, then the SPI reads of the EUI
    assert mcu.closed


def _signed_cert(key_path: Path, out: Path) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, EUI)])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)  # type: ignore[arg-type]
            .not_valid_after(now + datetime.timedelta(days=1)).sign(ca_key, hashes.SHA256()))
    out.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def test_tls_file_check_finds_missing_loose_and_mismatched_files(tmp_path: Path) -> None:
    mine = provision(tmp_path / "mine", EUI)
    other = provision(tmp_path / "other", EUI)
    _signed_cert(mine.key_path, tmp_path / "mine.crt")
    (tmp_path / "ca.crt").write_text("ca")
    tls = ('[mqtt]\nserver = "mqtts://b:8883"\nca_cert = "ca.crt"\n'
           'client_cert = "mine.crt"\nclient_key = "{key}"')
    good = _config(tls.format(key=mine.key_path), tmp_path)
    assert check_tls_files(good.mqtt) == []
    wrong = _config(tls.format(key=other.key_path), tmp_path)
    assert "was not issued for" in check_tls_files(wrong.mqtt)[0]
    mine.key_path.chmod(0o644)
    assert "make it 0600" in check_tls_files(good.mqtt)[0]
    missing = _config(tls.format(key=tmp_path / "nope.key"), tmp_path)
    assert check_tls_files(missing.mqtt) == [
        f"mqtt.client_key: {tmp_path / 'nope.key'} does not exist"]


def test_provision_command_shows_the_eui_and_next_steps(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'[gateway]\nid = "{EUI}"\n')
    parser = argparse.ArgumentParser()
    add_ops_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["provision", "-c", str(config), "--dir", str(tmp_path / "tls")])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert f"gateway EUI  {EUI}" in out and "client_key" in out
    assert args.func(args) == 1  # second run: the key exists and is kept
