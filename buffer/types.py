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


AckCallback = Callable[[bool], None]
"""Called once per ``send``: True when the broker acknowledged it, False when it failed."""


class UplinkSink(Protocol):
    """Where the buffer delivers records (the MQTT publisher in production)."""

    def can_send(self) -> bool:
        """True when connected and the in-flight window has room."""
        ...

    def send(self, delivery: Delivery, on_result: AckCallback) -> None:
        """Start publishing; ``on_result`` is called later on the event loop thread."""
        ...
