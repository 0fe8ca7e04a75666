"""Gateway identity for mutual TLS: a private key made on the gateway and a CSR to sign.

The key never leaves the gateway: ``provision`` writes it (mode 0600, owned by the
service user) and a certificate signing request whose common name is the gateway
EUI, which is how ChirpStack names a gateway's client certificate and what a broker
with ``use_identity_as_username`` matches in its ACL. The signed certificate and
the CA go into ``[mqtt] ca_cert / client_cert / client_key``; username and
password remain the alternative for brokers without client certificates.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from gateway.config import Config, MqttSection

__all__ = [
    "SERVICE_USER",
    "ProvisionError",
    "ProvisionResult",
    "check_tls_files",
    "gateway_eui",
    "provision",
    "write_private_file",
]

SERVICE_USER = "lora-gateway"
KEY_NAME = "gateway.key"
CSR_NAME = "gateway.csr"
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


class ProvisionError(Exception):
    """Provisioning could not be done; the message tells the operator what to do."""


@dataclass(frozen=True)
class ProvisionResult:
    eui: str
    key_path: Path
    csr_path: Path
    csr_pem: bytes


def write_private_file(path: Path, data: bytes, *, owner: str | None = None) -> None:
    """Create ``path`` with mode 0600 from its first byte on, whatever the umask.

    Refuses to overwrite: replacing a key silently would orphan the signed certificate.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        if owner is not None:
            entry = pwd.getpwnam(owner)
            os.fchown(fd, entry.pw_uid, entry.pw_gid)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _new_key(kind: str) -> PrivateKey:
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise ProvisionError(f"unknown key type {kind!r} (ec or rsa)")


def _csr(key: PrivateKey, eui: str) -> x509.CertificateSigningRequest:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, eui)])
    return x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())


def _service_owner() -> str | None:
    """Hand the key to the service user when root provisions it, so the service can read it."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        return None
    return SERVICE_USER


def provision(out_dir: Path, eui: str, *, key_type: str = "ec", force: bool = False,
              owner: str | None = None) -> ProvisionResult:
    """Create ``gateway.key`` (0600) and ``gateway.csr`` in ``out_dir`` for gateway ``eui``."""
    eui = eui.lower()
    if len(eui) != 16 or any(c not in "0123456789abcdef" for c in eui):
        raise ProvisionError(f"gateway EUI {eui!r} is not 16 hex digits")
    key_path, csr_path = out_dir / KEY_NAME, out_dir / CSR_NAME
    if key_path.exists() and not force:
        raise ProvisionError(f"{key_path} exists; keep it (its certificate depends on it) "
                             "or pass --force to make a new key")
    out_dir.mkdir(mode=0o755, parents=True, exist_ok=True)  # the key itself is 0600
    key = _new_key(key_type)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    if force:
        with contextlib.suppress(FileNotFoundError):
            key_path.unlink()
        with contextlib.suppress(FileNotFoundError):
            csr_path.unlink()
    the_owner = owner if owner is not None else _service_owner()
    try:
        write_private_file(key_path, pem, owner=the_owner)
    except FileExistsError as exc:
        raise ProvisionError(f"{key_path} appeared while provisioning; not overwritten") from exc
    except (OSError, KeyError) as exc:
        raise ProvisionError(f"cannot write {key_path}: {exc}") from exc
    csr_pem = _csr(key, eui).public_bytes(serialization.Encoding.PEM)
    csr_path.write_bytes(csr_pem)
    return ProvisionResult(eui=eui, key_path=key_path, csr_path=csr_path, csr_pem=csr_pem)


def gateway_eui(config: Config, read_chip: Callable[[], bytes] | None = None) -> str:
    """The gateway EUI: the configured id, else the emulator's, else read from the chip."""
    if config.gateway.id:
        return config.gateway.id
    if config.concentrator.backend == "emulator":
        return config.concentrator.emulator.eui.lower()
    reader = read_chip or (lambda: _read_chip_eui(config))
    try:
        return reader().hex()
    except Exception as exc:  # hardware access fails in many ways; all mean "tell me the EUI"
        raise ProvisionError(f"cannot read the concentrator's EUI ({exc}); stop the service "
                             "(systemctl stop lora-gateway) or pass --eui") from exc


def _read_chip_eui(config: Config) -> bytes:
    """Through the radio door, so a USB board is read through its MCU, an SPI one over SPI."""
    from gateway.radio import radio_settings
    from hal.backends import open_radio

    radio = open_radio(radio_settings(config), purpose="inspect")
    try:
        return radio.concentrator.eui()
    finally:
        radio.close()


def check_tls_files(mqtt: MqttSection) -> list[str]:
    """Problems with the configured TLS files, one sentence each (empty when all is well).

    For ``doctor``: a missing file, a group- or world-readable private key, and a
    client certificate that does not belong to the key are each reported.
    """
    problems: list[str] = []
    for label, path in (("ca_cert", mqtt.ca_cert), ("client_cert", mqtt.client_cert),
                        ("client_key", mqtt.client_key)):
        if path is not None and not path.is_file():
            problems.append(f"mqtt.{label}: {path} does not exist")
    if problems or mqtt.client_key is None or mqtt.client_cert is None:
        return problems
    mode = stat.S_IMODE(mqtt.client_key.stat().st_mode)
    if mode & 0o077:
        problems.append(f"mqtt.client_key: {mqtt.client_key} is mode {mode:04o}; make it 0600")
    try:
        key = serialization.load_pem_private_key(mqtt.client_key.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(mqtt.client_cert.read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        problems.append(f"mqtt.client_key/client_cert: cannot be read as PEM ({exc})")
        return problems
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(serialization.Encoding.DER, fmt) != \
            key.public_key().public_bytes(serialization.Encoding.DER, fmt):
        problems.append(f"mqtt.client_cert: {mqtt.client_cert} was not issued for "
                        f"{mqtt.client_key}")
    return problems
