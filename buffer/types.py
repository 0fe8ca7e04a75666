"""Records and interfaces of the uplink buffer, shared with the daemon and the MQTT sink."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class UplinkRecord:
    """One received uplink as the buffer keeps it.

    ``body`` is opaque here (the daemon stores a serialised ChirpStack ``UplinkFrame``).
    ``device`` is the ordering key: frames with the same key leave in ``seq`` order;
    the empty string means "no ordering constraint" (e.g. unparseable frames).
    """

    seq: int
    device: str
    body: bytes
    received_ns: int
    """Wall-clock time of reception (ns since the Unix epoch), possibly wrong if not synced."""
    monotonic_ns: int
    """CLOCK_BOOTTIME at reception: with ``boot_id`` it lets wall time be corrected later."""
    boot_id: str
    clock_synced: bool


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the sink needs to publish a record: the record and how long it was held."""

    record: UplinkRecord
    replayed: bool
    """True when the record was held back (backlog / outage) rather than sent live."""
    hold_ms: int
    timing: Timing | None = None
    """Receive-time facts computed by the buffer at send time; None from older callers."""


class UndeliverableError(Exception):
    """Raised by ``UplinkSink.send`` for a record that can never be sent (its body is not
    a valid message): the buffer quarantines it instead of retrying it forever."""


AckCallback = Callable[[bool], None]
"""Called once per ``send``: True when the broker acknowledged it, False when it failed."""


class UplinkSink(Protocol):
    """Where the buffer delivers records (the MQTT publisher in production).

    A sink may also have ``ready_after_results = True``: a promise to call the buffer's
    ``sink_ready`` (on the loop, in the same loop turn) after every batch of successful
    results it reports, so the buffer does not schedule a pump of its own per batch.
    """

    def can_send(self) -> bool:
        """True when connected and the in-flight window has room."""
        ...

    def send(self, delivery: Delivery, on_result: AckCallback) -> None:
        """Start publishing; ``on_result`` is called later on the event loop thread.

        Raises ``UndeliverableError`` (and does not call ``on_result``) for a record
        whose body can never be published."""
        ...


@dataclass(frozen=True, slots=True)
class Timing:
    """What is known, at the moment a record is sent, about when it was really received.

    A Raspberry Pi has no RTC, so a frame may have been stamped by a wall clock that
    NTP had not yet set. ``rewrite_gw_time`` tells the sink to replace the body's
    ``gw_time`` with ``gw_time_ns`` (or remove it when that is None); otherwise the
    body's own ``gw_time`` stands.
    """

    gw_time_ns: int | None
    rewrite_gw_time: bool
    clock_synced: bool
    """False: any ``gw_time`` left in the body came from an unsynchronised clock."""
    corrected: bool
    """True when ``gw_time_ns`` was derived from the boot clock after NTP synchronised."""
    hold_ms: int | None
    """How long the buffer held the frame; None when no trustworthy clock can tell."""

    @property
    def needs_rewrite(self) -> bool:
        """False for the common case (synchronised clock): the body goes out untouched."""
        return self.rewrite_gw_time or not self.clock_synced
