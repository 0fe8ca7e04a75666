"""The UDP link and buffer sink against the stand-in server: resends, outages, bad datagrams.

Real UDP sockets on 127.0.0.1, the real UplinkBuffer on a real SQLite file; the
link's delays are shrunk through its settings instead of sleeping.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import struct
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from buffer.uplink_buffer import UplinkBuffer
from gateway.udp_uplink_sink import UdpUplinkSink
from hal.types import CrcStatus, Modulation, RxPacket
from packet_forwarder.chirpstack import build_uplink_frame, make_context
from packet_forwarder.semtech_udp.link import SemtechUdpLink, UdpSettings
from tests.support.buffer import make_config
from tests.support.fakes import FakeClock
from tests.support.semtech_ns import StandInServer, start_server

EUI = bytes.fromhex("0016c001ff10a235")
FAST = dict(keepalive_s=0.05, missed_pulls=3, push_timeout_s=0.02, resend_max_s=0.1,
            push_attempts=4, reconnect_min_s=0.02, reconnect_max_s=0.1, bad_log_interval_s=60)


async def until(cond: Callable[[], bool], tries: int = 3000) -> None:
    """Bounded wait for a condition (never a timing assertion)."""
    for _ in range(tries):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never held")


def body(device: int, n: int) -> bytes:
    payload = bytes((0x40, device, 0, 0, 0x26, 0, n & 0xFF, n >> 8, 1)) + bytes(8)
    rx = RxPacket(payload=payload, frequency_hz=868_100_000, if_chain=0, rf_chain=0,
                  modulation=Modulation.LORA, spreading_factor=7, bandwidth_hz=125_000,
                  code_rate="4/5", crc_status=CrcStatus.CRC_OK, rssi_dbm=-50, snr_db=9,
                  count_us=1000 + n)
    return build_uplink_frame(rx, gateway_id=EUI.hex(), uplink_id=n, gw_time_ns=None,
                              context=make_context(rx.count_us, 1, 0)).SerializeToString()


def submit(buf: UplinkBuffer, device: int, n: int) -> None:
    clock = FakeClock()
    buf.submit(f"d{device}", body(device, n), received_ns=clock.wall, monotonic_ns=clock.mono,
               clock_synced=True)


def arrivals(server: StandInServer) -> dict[int, list[int]]:
    """Per device, the frame numbers in the order the server first saw them."""
    seen: dict[int, list[int]] = defaultdict(list)
    for rxpk in server.rxpks():
        raw = base64.b64decode(rxpk["data"])
        n = raw[6] | raw[7] << 8
        if n not in seen[raw[1]]:
            seen[raw[1]].append(n)
    return seen


async def gateway(tmp_path: Path, port: int, **kw: Any) -> tuple[
        SemtechUdpLink, UplinkBuffer, asyncio.Task[None]]:
    link = SemtechUdpLink(UdpSettings("localhost", port, **{**FAST, **kw}), EUI, name="udp1")
    sink = UdpUplinkSink(link)
    buf = UplinkBuffer(make_config(tmp_path / "b.sqlite", commit_interval_s=0.05), sink,
                       boot_id="boot", clock=FakeClock())
    sink.ready_callback = buf.sink_ready
    await buf.open()
    return link, buf, asyncio.create_task(link.run())


async def shutdown(link: SemtechUdpLink, buf: UplinkBuffer, task: asyncio.Task[None]) -> None:
    await buf.close()
    await link.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_every_frame_delivered_while_push_acks_are_dropped(tmp_path: Path) -> None:
    async def main() -> None:
        server = await start_server()
        link, buf, task = await gateway(tmp_path, server.port)
        await until(lambda: link.state == "up")
        server.drop_push_acks = True
        for n in range(30):
            submit(buf, n % 3, n)
        await until(lambda: link.counters.push_resent > 0 and len(server.pushes) >= 60)
        server.drop_push_acks = False
        await until(lambda: buf.stats().depth == 0)
        await shutdown(link, buf, task)
        server.close()
        got = arrivals(server)
        assert {d: got[d] for d in range(3)} == {d: list(range(d, 30, 3)) for d in range(3)}
        assert link.counters.push_resent > 0

    asyncio.run(main())


def test_server_down_fills_the_buffer_and_drains_in_order_when_back(tmp_path: Path) -> None:
    async def main() -> None:
        server = await start_server()
        port = server.port
        link, buf, task = await gateway(tmp_path, port)
        await until(lambda: link.state == "up")
        server.close()  # gone: the kernel answers "port unreachable"
        with capture_logs() as logs:
            for n in range(40):
                submit(buf, n % 4, n)
            await until(lambda: link.state == "down")
            await until(lambda: buf.stats().persisted_rows >= 40 - link.inflight)
            assert buf.stats().depth == 40
            back = await start_server(port)
            await until(lambda: link.state == "up")
            await until(lambda: buf.stats().depth == 0)
        await shutdown(link, buf, task)
        back.close()
        got = arrivals(back)
        assert {d: got[d] for d in range(4)} == {d: list(range(d, 40, 4)) for d in range(4)}
        events = [e for e in logs if e.get("server") == "udp1"]
        assert [e["event"] for e in events if e["event"].startswith("udp_server_")][:1] == [
            "udp_server_down"]
        # the host name was resolved again before the server was found again
        assert sum(e["event"] == "udp_server_open" for e in events) >= 2

    asyncio.run(main())


def test_bad_datagrams_get_one_line_per_reason_and_change_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        server = await start_server()
        link, buf, task = await gateway(tmp_path, server.port)
        await until(lambda: link.state == "up")
        with capture_logs() as logs:
            for _ in range(20):
                server.send_raw(b"\x01\x00\x00\x01")  # wrong version
                server.send_raw(struct.pack(">BHB", 2, 4242, 1))  # ack of nothing
                server.send_raw(b"\x02\x00\x01\x03not json")
            submit(buf, 1, 1)
            await until(lambda: sum(link.counters.bad.values()) == 60 and buf.stats().depth == 0)
        await shutdown(link, buf, task)
        server.close()
        lines = [e for e in logs if e["event"] == "udp_bad_datagram"]
        assert sorted(e["reason"] for e in lines) == ["malformed", "unexpected_token"]
        assert link.counters.bad == {"malformed": 40, "unexpected_token": 20}
        assert link.state == "up" and arrivals(server)[1] == [1]

    asyncio.run(main())


def test_the_host_name_is_resolved_again_so_a_server_that_moved_is_found(
        tmp_path: Path) -> None:
    async def main() -> None:
        old = await start_server()
        new = await start_server()
        where = {"port": old.port}
        asked: list[str] = []

        async def resolve(host: str, port: int) -> tuple[int, tuple[str, int]]:
            asked.append(host)
            return socket.AF_INET, ("127.0.0.1", where["port"])

        link = SemtechUdpLink(UdpSettings("lns.example.net", 1700, **FAST), EUI, name="moved",
                              resolve=resolve)
        sink = UdpUplinkSink(link)
        buf = UplinkBuffer(make_config(tmp_path / "b.sqlite"), sink, boot_id="boot",
                           clock=FakeClock())
        sink.ready_callback = buf.sink_ready
        await buf.open()
        task = asyncio.create_task(link.run())
        await until(lambda: link.state == "up")
        old.close()  # the operator moves the server; DNS now says "new"
        where["port"] = new.port
        submit(buf, 1, 1)
        await until(lambda: link.address == ("127.0.0.1", new.port) and link.state == "up")
        await until(lambda: buf.stats().depth == 0)
        await shutdown(link, buf, task)
        new.close()
        assert arrivals(new)[1] == [1] and len(asked) >= 2
        assert set(asked) == {"lns.example.net"}

    asyncio.run(main())


def test_pull_resp_from_a_server_without_downlinks_is_counted_and_not_answered(
        tmp_path: Path) -> None:
    async def main() -> None:
        server = await start_server()
        link, buf, task = await gateway(tmp_path, server.port)
        await until(lambda: link.state == "up" and server.gateway_addr is not None)
        server.pull_resp({"imme": True, "freq": 869.525, "powe": 14, "modu": "LORA",
                          "datr": "SF9BW125", "codr": "4/5", "data": "QAAAAAA="}, 77)
        await until(lambda: link.counters.bad.get("downlinks_disabled") == 1)
        submit(buf, 1, 1)  # the link goes on as before
        await until(lambda: buf.stats().depth == 0)
        await shutdown(link, buf, task)
        server.close()
        assert server.tx_acks == []

    asyncio.run(main())
