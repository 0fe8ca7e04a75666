"""MqttLink over TLS (mqtts://) to a Mosquitto with a throw-away CA."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from structlog.testing import capture_logs

from tests.support.broker import MosquittoBroker, require_mosquitto
from tests.support.mqtt_harness import TOPICS, Harness, run, settings, until


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_pki(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1, valid for a day."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    paths = (folder / "ca.pem", folder / "server.pem", folder / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(_pem(key))
    return paths


def test_publish_over_tls(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    with MosquittoBroker(tmp_path / "b", binary=require_mosquitto(), tls=pki) as b:
        async def scenario() -> None:
            h = Harness(settings(b.url, ca_cert=pki[0], max_inflight=300))
            await h.start()
            results: list[bool] = []
            for i in range(200):  # enough PUBACKs to exercise TLS-buffered reads
                assert h.link.publish(TOPICS.event("up"), b"%d" % i, on_result=results.append)
            await until(lambda: len(results) == 200, "acks over TLS")
            assert results == [True] * 200
            await h.stop()

        run(scenario())


def test_untrusted_server_certificate_is_refused_and_retried(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    other_ca = make_pki(tmp_path / "other")[0]
    with MosquittoBroker(tmp_path / "b", binary=require_mosquitto(), tls=pki) as b:
        async def scenario() -> None:
            h = Harness(settings(b.url, ca_cert=other_ca))
            with capture_logs() as logs:
                task = asyncio.create_task(h.link.run())
                await until(lambda: sum(e["event"] == "mqtt_connect_failed" for e in logs) >= 2,
                            "refused handshakes")
                assert not h.link.connected and not task.done()
                await h.link.stop()
                await asyncio.wait_for(task, 10)
            assert "CERTIFICATE_VERIFY_FAILED" in next(
                e["error"] for e in logs if e["event"] == "mqtt_connect_failed")

        run(scenario())

