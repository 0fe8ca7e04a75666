"""Synthetic AGC/ARB images for tests: the right size, deterministic, never Semtech's.

Each test that needs images builds its own allow-list from these, since the shipped
one lists only the real release's hashes.
"""

from __future__ import annotations

import hashlib

from hal.firmware import AGC_SX1250_FILE, ARB_FILE, sha256_hex
from hal.registers import MCU_FW_SIZE


def synthetic_image(seed: bytes, size: int = MCU_FW_SIZE) -> bytes:
    """``size`` bytes from SHA-256 in counter mode over ``seed``."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return bytes(out[:size])


AGC = synthetic_image(b"agc")
ARB = synthetic_image(b"arb")
ALLOWED = {AGC_SX1250_FILE: frozenset({sha256_hex(AGC)}), ARB_FILE: frozenset({sha256_hex(ARB)})}
