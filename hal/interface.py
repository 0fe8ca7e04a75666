"""The narrow interfaces between the HAL and the rest of the gateway.

``Concentrator`` is what the daemon drives. ``SpiTransport`` and ``OutputLine``
are the only objects that differ between a Raspberry Pi and the emulator: the
SX1302 driver is written against them and nothing else.

All ``Concentrator`` methods block (SPI I/O); the daemon calls them from its one
radio thread, never from the event loop.
"""

from __future__ import annotations

from typing import Protocol

from hal.types import ChannelPlan, RxErrorCounters, RxPacket, TxPacket, TxState


class SpiTransport(Protocol):
    """A full-duplex SPI link with chip-select held for the whole transfer."""

    def transfer(self, data: bytes) -> bytes:
        """Clock ``data`` out and return the bytes clocked in (same length)."""
        ...

    def close(self) -> None: ...


class OutputLine(Protocol):
    """One GPIO output (reset or power-enable pin)."""

    def set(self, high: bool) -> None: ...

    def close(self) -> None: ...


class Concentrator(Protocol):
    """A LoRa concentrator: configure, receive, transmit, read its clock and identity."""

    rx_errors: RxErrorCounters

    def check_plan(self, plan: ChannelPlan) -> str | None:
        """Whether this concentrator can receive ``plan``: None if it can, else why not.

        Pure computation, no I/O: the protocol layer asks it before accepting a channel
        plan from the network server, without knowing the chip's radio constraints.
        """
        ...

    def start(self, plan: ChannelPlan) -> None:
        """Bring the chip up and start receiving on ``plan``; raises ``HalError`` on failure."""
        ...

    def receive(self) -> list[RxPacket]:
        """Return the packets waiting in the chip (possibly none); never blocks for long."""
        ...

    def send(self, packet: TxPacket) -> None:
        """Load ``packet`` into the TX chain and arm its trigger."""
        ...

    def tx_state(self) -> TxState: ...

    def counter_us(self) -> int:
        """The 32-bit microsecond counter, extended from the chip's 27-bit count."""
        ...

    def eui(self) -> bytes:
        """The chip's 8-byte EUI, big-endian."""
        ...

    def stop(self) -> None: ...
