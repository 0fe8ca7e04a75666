"""The buffer's way out: publish stored uplinks on ``event/up`` through the MQTT link.

The buffer stores each uplink as a serialised protobuf ``UplinkFrame``; this
adapter adds the replay metadata to held-back ones, re-encodes for the
configured marshaler and publishes with QoS 1 so that only the broker's PUBACK
lets the buffer forget a record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from chirpstack_api.gw import gw_pb2

from buffer.types import AckCallback, Delivery, UndeliverableError
from packet_forwarder.chirpstack import (
    JSON,
    PROTOBUF,
    MessageDecodeError,
    UnknownMarshalerError,
    from_protobuf,
    marshal,
    with_delivery_metadata,
    with_replay_metadata,
)
from packet_forwarder.mqtt_link import MqttLink
from packet_forwarder.topics import Topics

log = structlog.get_logger(__name__)


class MqttUplinkSink:
    """``buffer.types.UplinkSink`` over an ``MqttLink``.

    Set ``ready_callback`` (the buffer's ``sink_ready``) to be told when sending
    becomes possible again: after a connect and when in-flight slots free up.
    """

    ready_after_results = True
    """The link calls its ready listeners after every batch of PUBACKs it reads, in
    the same loop turn (``MqttLink._on_readable``): see ``buffer.types.UplinkSink``."""

    def __init__(self, link: MqttLink, topics: Topics, marshaler: str = PROTOBUF) -> None:
        if marshaler not in (PROTOBUF, JSON):
            raise UnknownMarshalerError(f"unknown marshaler {marshaler!r}")
        self._link = link
        self._topic = topics.event("up")
        self._marshaler = marshaler
        self.ready_callback: Callable[[], None] | None = None
        self.undecodable = 0
        """Stored bodies that were not UplinkFrames (refused as undeliverable, counted)."""
        link.add_ready_listener(self._on_link_ready)

    def can_send(self) -> bool:
        return self._link.can_publish()

    def send(self, delivery: Delivery, on_result: AckCallback) -> None:
        """Publish one record; ``on_result`` is called exactly once, on the loop thread.

        A refused publish (link down or window full in between) reports False; the
        buffer keeps the record and retries. A body that is not an ``UplinkFrame``
        raises ``UndeliverableError``: retrying it could never succeed, so the buffer
        quarantines it (and logs it) and the device's later frames go on.
        """
        try:
            payload = self._encode(delivery)
        except MessageDecodeError as exc:
            self.undecodable += 1
            raise UndeliverableError(f"body is not an UplinkFrame: {exc}") from exc
        if not self._link.publish(self._topic, payload, qos=1, on_result=on_result,
                                  bulk=True):
            # "later", as the protocol promises: never re-enter the buffer from send()
            asyncio.get_running_loop().call_soon(on_result, False)

    def _encode(self, delivery: Delivery) -> bytes:
        record = delivery.record
        body = record.body
        timing = delivery.timing
        if timing is not None:
            if delivery.replayed or timing.needs_rewrite:
                body = with_delivery_metadata(
                    body, buffered=delivery.replayed, hold_ms=timing.hold_ms,
                    clock_synced=timing.clock_synced, rewrite_gw_time=timing.rewrite_gw_time,
                    gw_time_ns=timing.gw_time_ns, corrected=timing.corrected)
        elif delivery.replayed:
            body = with_replay_metadata(body, delivery.hold_ms, record.clock_synced)
        if self._marshaler == PROTOBUF:
            if body is record.body:
                from_protobuf(body, gw_pb2.UplinkFrame)  # never publish garbage as-is
            return body
        return marshal(from_protobuf(body, gw_pb2.UplinkFrame), self._marshaler)

    def _on_link_ready(self) -> None:
        if self.ready_callback is not None:
            self.ready_callback()
