"""Render recorded SPI transactions as one readable line each (for golden files and debugging).

``W 5783 <- 0C`` is a one-byte register write, ``R 5606 -> 10`` a one-byte read;
bursts longer than 16 bytes show their length and a SHA-256 prefix instead of the
data; radio commands through the mux show target, opcode and parameters.
"""

from __future__ import annotations

import hashlib

from hal.spi import MUX_SX1302, WRITE_FLAG

INLINE_MAX = 16


def _data(data: bytes) -> str:
    if len(data) <= INLINE_MAX:
        return data.hex(" ").upper()
    return f"[{len(data)} bytes sha256:{hashlib.sha256(data).hexdigest()[:16]}]"


def describe(sent: bytes, received: bytes) -> str:
    """One line for one transaction."""
    if not sent:
        return "EMPTY"
    if sent[0] != MUX_SX1302:
        target = {1: "RADIO_A", 2: "RADIO_B"}.get(sent[0], f"MUX{sent[0]:02X}")
        params = sent[2:]
        answer = received[2:]
        tail = f" -> {_data(answer)}" if any(answer) else ""
        return f"{target} op {sent[1]:02X} {_data(params)}".rstrip() + tail
    address = ((sent[1] & 0x7F) << 8) | sent[2]
    if sent[1] & WRITE_FLAG:
        kind = "W" if len(sent) == 4 else "WB"
        return f"{kind} {address:04X} <- {_data(sent[3:])}"
    data = received[4:]
    if len(sent) == 5:
        return f"R {address:04X} -> {data.hex().upper()}"
    return f"RB {address:04X} x{len(data)} -> {_data(data)}"


def render(transcript: list[tuple[bytes, bytes]]) -> list[str]:
    return [describe(sent, received) for sent, received in transcript]
