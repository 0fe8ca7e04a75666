"""HAL exception tree: every failure of the radio layer is a ``HalError``."""

from __future__ import annotations


class HalError(Exception):
    """Base of all HAL errors; the daemon catches this to restart the concentrator."""


class ChipNotAnsweringError(HalError):
    """The version register read back 0x00: no SPI link, or the chip is held in reset."""


class ChipVersionError(HalError):
    """The chip answered with an unexpected version."""


class RxRecordError(HalError):
    """A record in the RX buffer could not be parsed; carries the reason code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class PlanError(HalError):
    """A channel plan the concentrator's two radios cannot receive."""


class FirmwareError(HalError):
    """AGC/ARB firmware missing, of the wrong hash, or failed its handshake."""
