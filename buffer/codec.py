"""Stored bodies deflated with a preset dictionary: fewer bytes on the SD card.

A stored body is a serialised ChirpStack ``UplinkFrame``; consecutive ones share
most of their bytes (gateway id, frequency, modulation, field tags). Deflate alone
cannot exploit that on 110 bytes, but with a dictionary made of a few earlier
bodies it writes about 40. In an outage every byte of a row is written twice (WAL,
then the checkpoint), and with the WAL synced at each commit that is what keeps
the gateway inside the SD card's budget of 1 KB per frame at 10 frames/s.

Small window and memory level on purpose: about 4 µs per body, since a fresh
compressor must be primed with the dictionary for each one (rows are independent:
any one can be read, deleted or quarantined alone).
"""

from __future__ import annotations

import zlib

RAW = 0
"""``codec`` of a body stored as it is."""
_WBITS = -10  # raw deflate, 1 KiB window: the dictionary and one body
_MEM_LEVEL = 1
DICTIONARY_BYTES = 480
_MAX_BODY = 64 * 1024


class CodecError(ValueError):
    """A stored body does not inflate with its dictionary (damage)."""


def make_dictionary(bodies: list[bytes]) -> bytes:
    """The last ``DICTIONARY_BYTES`` of a few bodies (deflate favours recent bytes)."""
    return b"".join(bodies[-8:])[-DICTIONARY_BYTES:]


def deflate(body: bytes, dictionary: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, _WBITS, _MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY,
                              dictionary)
    return packer.compress(body) + packer.flush()


def inflate(data: bytes, dictionary: bytes) -> bytes:
    try:
        unpacker = zlib.decompressobj(_WBITS, dictionary)
        body = unpacker.decompress(data, _MAX_BODY)
    except zlib.error as exc:
        raise CodecError(f"body does not inflate: {exc}") from exc
    if not unpacker.eof or unpacker.unconsumed_tail or unpacker.unused_data:
        raise CodecError("body does not inflate to its end")
    return body
