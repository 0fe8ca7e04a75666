"""``doctor`` for the ``[[server]]`` entries: is each network server reachable, each backlog sane.

ChirpStack MQTT servers get the same checks as ``[mqtt]``; a Semtech UDP server is
asked the protocol's own question (a PULL_DATA, PROTOCOL.TXT §5.2), since UDP has
no connection to try: only a PULL_ACK proves someone listens. Each line's name
carries the server name.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from pathlib import Path

from gateway.config import Config
from gateway.config_servers import ServerSection
from gateway.doctor_net import check_backhaul
from gateway.doctor_result import CheckResult, fail, ok, warn
from gateway.servers import server_buffer_path
from packet_forwarder.semtech_udp.codec import Datagram, DatagramError, Kind, decode, encode
from packet_forwarder.semtech_udp.link import UdpSettings

UDP_TIMEOUT_S = 3.0


def check_servers(config: Config, gateway_id: str | None) -> list[CheckResult]:
    """One or more lines per ``[[server]]`` (server ``default`` is checked as ``[mqtt]``)."""
    results: list[CheckResult] = []
    for server in config.servers:
        if server.mqtt is not None:
            for r in check_backhaul(server.mqtt, gateway_id, server.mqtt.topic_prefix):
                results.append(dataclasses.replace(r, name=f"{server.name}:{r.name}"))
        else:
            results.append(check_udp(server, gateway_id))
    return results


def check_udp(server: ServerSection, gateway_id: str | None,
              timeout_s: float = UDP_TIMEOUT_S) -> CheckResult:
    """``gateway_id`` None (chip unreadable, no ``gateway.id``): nothing is sent, since a
    made-up EUI would speak for another gateway."""
    name = f"{server.name}:udp"
    if gateway_id is None:
        return warn(name, f"not asked: the gateway id is unknown ({server.url})",
                    "set gateway.id or fix the concentrator check above")
    settings = UdpSettings.from_url(server.url)
    try:
        infos = socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        return fail(name, f"cannot resolve {settings.host}: {exc}",
                    f"check the server's url and the building's DNS ({server.url})")
    family, kind, proto, _, address = infos[0]
    token = int.from_bytes(os.urandom(2), "big")
    with socket.socket(family, kind, proto) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.connect(address)
            sock.send(encode(Datagram(Kind.PULL_DATA, token, bytes.fromhex(gateway_id))))
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                reply = decode(sock.recv(65535))
                if reply.kind is Kind.PULL_ACK and reply.token == token:
                    return ok(name, f"PULL_ACK from {address[0]!s}:{address[1]!s}")
        except (OSError, DatagramError) as exc:
            return fail(name, f"no PULL_ACK from {server.url}: {exc}",
                        "is the network server listening on this UDP port? "
                        "a firewall may drop UDP")
    return fail(name, f"no PULL_ACK from {server.url} within {timeout_s:g} s",
                "is the network server listening on this UDP port?")


def server_buffers(config: Config) -> list[tuple[str, Path]]:
    """Old per-server buffer files still present, for the buffer check.

    Every server now shares ``buffer.path``; a ``<stem>.<name><suffix>`` file left by
    an earlier version still holds that server's backlog until the next start merges
    it, so it is worth checking. Absent ones are not listed."""
    found = [(s.name, server_buffer_path(config.buffer.path, s.name)) for s in config.servers]
    return [(name, path) for name, path in found if path.exists()]
