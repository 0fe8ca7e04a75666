"""The buffer's way out to a Semtech UDP server: one stored frame per PUSH_DATA.

One frame per datagram keeps "PUSH_ACK arrived" and "this record is delivered"
the same fact. The stored ``UplinkFrame`` is rendered as an ``rxpk`` at send time,
with the buffer's corrected reception time when the clock was not synchronised
at reception (and no ``time`` at all when no trustworthy time exists).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from chirpstack_api.gw import gw_pb2
from google.protobuf.message import DecodeError

from buffer.types import AckCallback, Delivery
from packet_forwarder.semtech_udp.link import SemtechUdpLink
from packet_forwarder.semtech_udp.rxpk import RxpkError, rxpk_from_uplink

log = structlog.get_logger(__name__)


class UdpUplinkSink:
    """``buffer.types.UplinkSink`` over a :class:`SemtechUdpLink`."""

    def __init__(self, link: SemtechUdpLink) -> None:
        self._link = link
        self.ready_callback: Callable[[], None] | None = None
        self.undecodable = 0
        link.add_ready_listener(self._on_link_ready)

    def can_send(self) -> bool:
        return self._link.can_push()

    def send(self, delivery: Delivery, on_result: AckCallback) -> None:
        """Push one record; ``on_result`` is called exactly once, later, on the loop thread."""
        loop = asyncio.get_running_loop()
        try:
            rxpk = rxpk_from_uplink(_frame(delivery.record.body), _gw_time_ns(delivery))
        except (DecodeError, RxpkError) as exc:
            self.undecodable += 1
            log.error("uplink_undecodable", server=self._link.name, seq=delivery.record.seq,
                      error=str(exc))
            loop.call_soon(on_result, False)
            return
        if not self._link.push({"rxpk": [rxpk]}, on_result):
            loop.call_soon(on_result, False)

    def _on_link_ready(self) -> None:
        if self.ready_callback is not None:
            self.ready_callback()


def _frame(body: bytes) -> gw_pb2.UplinkFrame:
    frame = gw_pb2.UplinkFrame()
    frame.ParseFromString(body)
    return frame


def _gw_time_ns(delivery: Delivery) -> int | None:
    """The reception time to report: the buffer's correction when it has one."""
    timing = delivery.timing
    if timing is not None and timing.rewrite_gw_time:
        return timing.gw_time_ns
    if timing is not None and not timing.clock_synced:
        return None
    frame = _frame(delivery.record.body)
    info = frame.rx_info
    return info.gw_time.ToNanoseconds() if info.HasField("gw_time") else None
