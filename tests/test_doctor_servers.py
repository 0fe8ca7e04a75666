"""doctor and status for several servers: UDP reachability by PULL_DATA, per-server lines."""

from __future__ import annotations

import asyncio
import socket

from gateway.config_servers import ServerSection
from gateway.doctor_servers import check_udp
from gateway.ops_cli import format_status
from packet_forwarder.routing import RouteFilter
from tests.support.semtech_ns import start_server

GW = "0016c001ff10a235"


def udp_section(port: int) -> ServerSection:
    return ServerSection("operator", "semtech_udp", f"udp://localhost:{port}", RouteFilter(),
                         True, None)


def test_udp_server_that_answers_pull_data_is_ok() -> None:
    async def main() -> None:
        server = await start_server()
        try:
            result = await asyncio.to_thread(check_udp, udp_section(server.port), GW, 2.0)
        finally:
            server.close()
        assert (result.name, result.status) == ("operator:udp", "ok"), result
        assert server.pulls and server.pulls[0][1] == bytes.fromhex(GW)

    asyncio.run(main())


def test_udp_server_that_is_not_there_fails_with_a_hint() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = check_udp(udp_section(port), GW, 0.5)
    assert result.status == "fail" and "PULL_ACK" in result.detail and result.hint


def test_status_lists_each_server_with_its_state_and_backlog() -> None:
    text = format_status({"servers": {
        "default": {"protocol": "chirpstack_mqtt", "state": "down", "backlog": 12,
                    "oldest_age_s": 3700, "dropped": {"age": 2}, "server": "mqtt://b:1883"},
        "operator": {"protocol": "semtech_udp", "state": "up", "backlog": 0, "dropped": {}},
    }})
    lines = [line for line in text.splitlines() if line.startswith("server")]
    assert len(lines) == 2
    assert "default: chirpstack_mqtt down  backlog 12 (oldest" in lines[0]
    assert "dropped 2" in lines[0] and "mqtt://b:1883" in lines[0]
    assert "operator: semtech_udp up  backlog 0" in lines[1]


def test_without_a_gateway_id_nothing_is_sent_in_another_gateways_name() -> None:
    async def main() -> None:
        server = await start_server()
        try:
            result = await asyncio.to_thread(check_udp, udp_section(server.port), None, 0.5)
        finally:
            server.close()
        assert result.status == "warn" and "gateway id" in result.detail
        assert server.pulls == []

    asyncio.run(main())
