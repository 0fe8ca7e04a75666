"""The LoRaWAN branch of the gateway's exception tree.

Frames come off the air from anyone: a malformed one is an everyday event, not a bug.
Every way a frame can be rejected therefore maps to ONE exception type carrying a short,
stable ``reason`` code, so the caller can count rejections per reason and log them
without ever catching a broad ``Exception``.
"""

from __future__ import annotations

from typing import Final, Literal

FormatReason = Literal[
    "not_bytes",
    "empty",
    "too_short",
    "too_long",
    "bad_major",
    "bad_length",
    "fopts_overrun",
    "fopts_with_fport0",
    "rfu_rejoin_type",
    "wrong_mtype",
]
"""Every reason code ``LoRaWANFormatError`` can carry (stable: used as a counter label)."""

FORMAT_REASONS: Final[tuple[FormatReason, ...]] = (
    "not_bytes",
    "empty",
    "too_short",
    "too_long",
    "bad_major",
    "bad_length",
    "fopts_overrun",
    "fopts_with_fport0",
    "rfu_rejoin_type",
    "wrong_mtype",
)


class LoRaWANError(Exception):
    """Base of every error raised by ``packet_forwarder.lorawan``."""


class LoRaWANFormatError(LoRaWANError):
    """A PHYPayload that is not a well-formed LoRaWAN frame (or not the kind expected).

    ``reason`` is one of ``FORMAT_REASONS``; ``detail`` is free text for the log.
    """

    def __init__(self, reason: FormatReason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason: FormatReason = reason
        self.detail = detail


class LoRaWANKeyError(LoRaWANError):
    """A key that is not 16 bytes (AES-128): a configuration error, never frame content."""
