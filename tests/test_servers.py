"""gateway.servers: the router in front of the per-server buffers, and the server= binding."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from structlog.contextvars import get_contextvars

from gateway.servers import Router, serving
from hal.types import CrcStatus, Modulation, RxPacket
from packet_forwarder.chirpstack import build_uplink_frame, make_context
from packet_forwarder.routing import RouteFilter


class Recorder:
    """Stands in for an UplinkBuffer: the router only calls ``submit``."""

    def __init__(self) -> None:
        self.got: list[bytes] = []

    def submit(self, device: str, body: bytes, **_: Any) -> int:
        self.got.append(body)
        return len(self.got)


def body(dev_addr: int) -> bytes:
    payload = b"\x40" + dev_addr.to_bytes(4, "little") + bytes(8)
    rx = RxPacket(payload=payload, frequency_hz=868_100_000, if_chain=0, rf_chain=0,
                  modulation=Modulation.LORA, spreading_factor=7, bandwidth_hz=125_000,
                  code_rate="4/5", crc_status=CrcStatus.CRC_OK, rssi_dbm=-50, snr_db=9,
                  count_us=1)
    return build_uplink_frame(rx, gateway_id="0016c001ff10a235", uplink_id=1, gw_time_ns=None,
                              context=make_context(1, 1, 0)).SerializeToString()


def route(router: Router, data: bytes) -> None:
    router.submit("d", data, received_ns=1, monotonic_ns=1, clock_synced=True)


def test_each_frame_goes_to_every_server_whose_filter_matches() -> None:
    a, b, c = Recorder(), Recorder(), Recorder()
    router = Router()
    router.add("default", RouteFilter.parse(["26011000/20"], []), a)  # type: ignore[arg-type]
    router.add("city", RouteFilter.parse(["26012000/20"], []), b)  # type: ignore[arg-type]
    router.add("all", RouteFilter(), c)  # type: ignore[arg-type]
    frames = [body(0x26011001), body(0x26012001), body(0x27000000)]
    for f in frames:
        route(router, f)
    assert (a.got, b.got, c.got) == ([frames[0]], [frames[1]], frames)
    assert router.routed() == {"default": 1, "city": 1, "all": 3}


def test_a_body_that_does_not_parse_reaches_every_server_and_is_counted() -> None:
    a, b = Recorder(), Recorder()
    router = Router()
    router.add("default", RouteFilter.parse(["26011000/20"], []), a)  # type: ignore[arg-type]
    router.add("city", RouteFilter.parse(["26012000/20"], []), b)  # type: ignore[arg-type]
    route(router, b"\xff\xff\xff")
    assert a.got == b.got == [b"\xff\xff\xff"] and router.unparsable == 1


def test_serving_binds_the_server_name_for_the_task_and_its_socket_callbacks() -> None:
    seen: list[object] = []

    async def link_life() -> None:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        got = asyncio.Event()

        def readable() -> None:  # registered inside the task, called by the loop later
            a.recv(10)
            seen.append(get_contextvars().get("server"))
            got.set()

        loop.add_reader(a.fileno(), readable)
        b.send(b"x")
        await got.wait()
        loop.remove_reader(a.fileno())
        a.close()
        b.close()
        seen.append(get_contextvars().get("server"))

    async def main() -> None:
        await asyncio.create_task(serving("city", link_life()))
        seen.append(get_contextvars().get("server"))  # the caller's context is untouched

    asyncio.run(main())
    assert seen == ["city", "city", None]


def test_a_frame_no_server_wants_is_counted() -> None:
    dropped: list[str] = []
    router = Router(on_unrouted=lambda: dropped.append("no_server"))
    router.add("default", RouteFilter.parse(["26011000/20"], []), Recorder())  # type: ignore[arg-type]
    route(router, body(0x27000000))
    route(router, body(0x26011001))
    assert dropped == ["no_server"] and router.unrouted == 1
