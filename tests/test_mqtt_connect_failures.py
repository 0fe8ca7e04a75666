"""Every way a connect can fail is one warning line naming the cause, and the link retries.

Real Mosquitto brokers (plain, TLS, TLS requiring client certificates), a TCP
server that never answers CONNECT, and files that are missing or not PEM.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from packet_forwarder.mqtt_link import MqttLink
from packet_forwarder.mqtt_tls import TlsFilesError, tls_context
from packet_forwarder.topics import Topics
from tests.support.broker import MosquittoBroker, require_mosquitto
from tests.support.mqtt_harness import GW, Harness, run, settings, until
from tests.test_mqtt_tls import make_pki


def failures(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "mqtt_connect_failed"]


async def retries_with(link: MqttLink, reason: str, *, times: int = 2) -> dict[str, Any]:
    """Run the link until it failed ``times`` times; every failure must be ``reason``."""
    with capture_logs() as logs:
        task = asyncio.create_task(link.run())
        await until(lambda: len(failures(logs)) >= times, f"{times} failures ({reason})")
        assert not task.done() and not link.connected  # alive, retrying
        await link.stop()
        await asyncio.wait_for(task, 10)
    found = failures(logs)
    assert {e["reason"] for e in found} == {reason}, found
    assert all(e["log_level"] == "warning" for e in found)
    assert not [e for e in logs if e.get("exc_info") or e["log_level"] in ("error", "critical")]
    return found[0]


class ClientCertBroker(MosquittoBroker):
    def config_lines(self) -> list[str]:
        return [*super().config_lines(), "require_certificate true"]


def test_missing_ca_file_is_named_and_retried(tmp_path: Path, broker: MosquittoBroker) -> None:
    missing = tmp_path / "nowhere" / "ca.pem"
    url = broker.url.replace("mqtt://", "mqtts://")
    first = None

    async def scenario() -> None:
        nonlocal first
        first = await retries_with(Harness(settings(url, ca_cert=missing)).link, "tls_files")

    run(scenario())
    assert first is not None and str(missing) in first["error"]


def test_garbage_ca_file_is_named_and_retried(tmp_path: Path, broker: MosquittoBroker) -> None:
    garbage = tmp_path / "ca.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n"
                       "-----END CERTIFICATE-----\n")
    with pytest.raises(TlsFilesError, match=str(garbage)):
        tls_context(garbage, None, None)
    url = broker.url.replace("mqtt://", "mqtts://")

    async def scenario() -> None:
        first = await retries_with(Harness(settings(url, ca_cert=garbage)).link, "tls_files")
        assert str(garbage) in first["error"]

    run(scenario())


def test_broker_that_never_answers_connect(tmp_path: Path) -> None:
    async def scenario() -> None:
        held: list[asyncio.StreamWriter] = []

        async def silent(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            held.append(w)  # accept, read nothing, answer nothing

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        link = Harness(settings(f"mqtt://127.0.0.1:{port}", connect_timeout_s=0.3)).link
        first = await retries_with(link, "no_connack")
        assert "never answered CONNECT" in first["error"]
        for w in held:
            w.transport.abort()
        server.close()

    run(scenario())


def test_client_certificate_rejected(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    with ClientCertBroker(tmp_path / "b", binary=require_mosquitto(), tls=pki) as b:
        async def scenario() -> None:
            first = await retries_with(Harness(settings(b.url, ca_cert=pki[0])).link,
                                       "client_certificate")
            assert "certificate" in first["error"]

        run(scenario())


def test_plain_mqtt_to_a_tls_port(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    with MosquittoBroker(tmp_path / "b", binary=require_mosquitto(), tls=pki) as b:
        async def scenario() -> None:
            plain = b.url.replace("mqtts://", "mqtt://")
            first = await retries_with(Harness(settings(plain)).link, "closed_before_connack")
            assert "mqtts://" in first["error"]

        run(scenario())


def test_tls_to_a_plain_port(tmp_path: Path, broker: MosquittoBroker) -> None:
    pki = make_pki(tmp_path / "pki")

    async def scenario() -> None:
        url = broker.url.replace("mqtt://", "mqtts://")
        first = await retries_with(Harness(settings(url, ca_cert=pki[0])).link,
                                   "tls_to_plain_port")
        assert "mqtt://" in first["error"]

    run(scenario())


def test_oversize_topic_prefix_is_a_line_not_a_dead_task(broker: MosquittoBroker) -> None:
    async def scenario() -> None:
        link = MqttLink(settings(broker.url), Topics("p" * 70_000, GW),
                        on_command=lambda n, p: None)
        first = await retries_with(link, "unexpected")
        assert first["error"]

    run(scenario())


def test_broker_down_is_retried_within_the_short_cap(tmp_path: Path) -> None:
    """While nothing listens, retries stay within ``reconnect_down_max_s`` (not the long
    back-off), so the link is back within a couple of seconds of the broker."""
    b = MosquittoBroker(tmp_path / "b", binary=require_mosquitto())
    b.start()

    async def scenario() -> None:
        h = Harness(settings(b.url, reconnect_min_s=0.05, reconnect_max_s=60.0,
                             reconnect_down_max_s=0.3))
        await h.start()
        with capture_logs() as logs:
            b.stop()
            await until(lambda: len(failures(logs)) >= 6, "refused retries")
            b.start()
            await until(lambda: h.link.connected, "back after the broker")
        waits = [e["delay_s"] for e in logs if e["event"] == "mqtt_reconnect_wait"]
        assert len(waits) >= 6 and max(waits) <= 0.3
        assert {e["reason"] for e in failures(logs)} == {"refused"}
        await h.stop()

    try:
        run(scenario())
    finally:
        b.stop()


def test_refused_credentials_back_off_exponentially(tmp_path: Path) -> None:
    """Failures after TCP (here: credentials) use the long, capped back-off."""
    with MosquittoBroker(tmp_path / "b", binary=require_mosquitto(),
                         users={"gw": "right"}) as b:
        async def scenario() -> None:
            link = Harness(settings(b.url, username="gw", password="wrong",
                                    reconnect_min_s=0.05, reconnect_max_s=0.4,
                                    reconnect_down_max_s=0.05)).link
            with capture_logs() as logs:
                task = asyncio.create_task(link.run())
                await until(lambda: len(failures(logs)) >= 5, "refused attempts")
                await link.stop()
                await asyncio.wait_for(task, 10)
            waits = [e["delay_s"] for e in logs if e["event"] == "mqtt_reconnect_wait"]
            assert max(waits) > 0.05  # grew past the down-cap: the long back-off
            assert {e["reason"] for e in failures(logs)} == {"refused_by_broker"}

        run(scenario())


