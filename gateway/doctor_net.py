"""The backhaul half of ``lora-gateway doctor``: DNS, TCP, TLS, MQTT login and a round trip.

Each check answers one question an installer on a ladder can act on, in the order
a connection is built, and stops the chain at the first failure so the report
names the real cause ("DNS fails") rather than its consequences.
"""

from __future__ import annotations

import secrets
import socket
import ssl
import threading
import time
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.config import MqttSection
from gateway.doctor_result import CheckResult, fail, ok, warn

TIMEOUT_S = 5.0


def _endpoint(server: str) -> tuple[bool, str, int]:
    parts = urlsplit(server)
    tls = parts.scheme == "mqtts"
    return tls, parts.hostname or "", parts.port or (8883 if tls else 1883)


def _tls_context(m: MqttSection) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(m.ca_cert) if m.ca_cert else None)
    if m.client_cert and m.client_key:
        context.load_cert_chain(str(m.client_cert), str(m.client_key))
    return context


def check_backhaul(m: MqttSection, gateway_id: str | None,
                   topic_prefix: str) -> list[CheckResult]:
    """DNS → TCP → TLS → MQTT CONNACK → publish/receive round trip, stopping at a failure.

    ``gateway_id`` None (chip unreadable, no ``gateway.id``): no round trip, since a
    made-up id would publish under another gateway's topics.
    """
    tls, host, port = _endpoint(m.server)
    results: list[CheckResult] = []
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        results.append(ok("dns", f"{host} → {addresses[0][4][0]}"))
    except OSError as exc:
        return [fail("dns", f"cannot resolve {host}: {exc}",
                     "check the broker name in mqtt.server and the building's DNS")]
    try:
        sock = socket.create_connection((host, port), timeout=TIMEOUT_S)
    except OSError as exc:
        return [*results, fail("tcp", f"cannot connect to {host}:{port}: {exc}",
                               "is the broker up? does the firewall allow outbound port "
                               f"{port}?")]
    with sock:
        results.append(ok("tcp", f"{host}:{port} reachable"))
        if tls:
            try:
                with _tls_context(m).wrap_socket(sock, server_hostname=host) as tsock:
                    results.append(ok("tls", f"{tsock.version()}, certificate verified"))
            except ssl.SSLCertVerificationError as exc:
                return [*results, fail("tls", f"certificate not accepted: {exc.reason or exc}",
                                       "check mqtt.ca_cert (the broker's CA) and the broker "
                                       "name in mqtt.server")]
            except OSError as exc:  # SSLError, or the plain broker hanging up on the hello
                return [*results, fail("tls", f"TLS handshake failed on {host}:{port}: "
                                              f"{getattr(exc, 'reason', None) or exc}",
                                       f"is {port} a plain MQTT port? mqtts:// needs the "
                                       "broker's TLS port (usually 8883); else check the "
                                       "client certificate")]
    results += _mqtt_round_trip(m, host, port, tls, gateway_id, topic_prefix)
    return results


def _mqtt_round_trip(m: MqttSection, host: str, port: int, tls: bool, gateway_id: str | None,
                     topic_prefix: str) -> list[CheckResult]:
    nonce = secrets.token_hex(4)
    client = mqtt.Client(CallbackAPIVersion.VERSION2,
                         client_id=f"{gateway_id or 'lora-gateway'}-doctor-{nonce}",
                         protocol=MQTTProtocolVersion.MQTTv5)
    if m.username:
        client.username_pw_set(m.username, m.password)
    if tls:
        client.tls_set_context(_tls_context(m))
    topic = "/".join(p for p in (topic_prefix, "gateway", gateway_id, "state", "doctor") if p)
    connack: list[ReasonCode] = []
    got = threading.Event()
    connected = threading.Event()

    def on_connect(_c: mqtt.Client, _u: object, _f: object, rc: ReasonCode,
                   _p: Properties | None) -> None:
        connack.append(rc)
        connected.set()

    client.on_connect = on_connect
    client.on_message = lambda _c, _u, msg: got.set() if msg.payload == nonce.encode() else None
    try:
        client.connect(host, port, keepalive=10)
    except OSError as exc:
        return [fail("mqtt-login", f"MQTT connect failed: {exc}", "check mqtt.server")]
    client.loop_start()
    try:
        if not connected.wait(TIMEOUT_S):
            return [fail("mqtt-login", "no CONNACK from the broker",
                         "is this an MQTT port? check mqtt.server")]
        if connack[0].is_failure:
            return [fail("mqtt-login", f"broker refused the login: {connack[0]}",
                         "check mqtt.username / mqtt.password or the client certificate")]
        results = [ok("mqtt-login", "broker accepted the login")]
        if gateway_id is None:
            results.append(warn("mqtt-round-trip", "skipped: the gateway id is unknown (the "
                                "chip's EUI could not be read and gateway.id is not set)",
                                "fix the concentrator line above, or set gateway.id"))
            return results
        client.subscribe(topic, qos=1)
        time.sleep(0.2)  # let the SUBACK land before publishing
        client.publish(topic, nonce.encode(), qos=1)
        if got.wait(TIMEOUT_S):
            results.append(ok("mqtt-round-trip", f"published and received on {topic}"))
        else:
            results.append(warn("mqtt-round-trip", f"no echo on {topic} within {TIMEOUT_S:g} s",
                                "the broker's ACL may forbid reading this topic; uplinks "
                                "can still flow — check the broker log"))
        return results
    finally:
        client.loop_stop()
        client.disconnect()
