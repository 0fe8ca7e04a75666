"""A minimal PNG writer (8-bit RGB, no interlace) with zlib and struct only.

Enough for the survey chart; it avoids a plotting dependency on a gateway image.
The format is the PNG specification's: signature, IHDR, one IDAT of
filter-type-0 scanlines, IEND, each chunk with its CRC-32.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

SIGNATURE = b"\x89PNG\r\n\x1a\n"
RGB = tuple[int, int, int]


class Canvas:
    """A width × height RGB image filled with ``background``; (0, 0) is the top left."""

    def __init__(self, width: int, height: int, background: RGB = (255, 255, 255)) -> None:
        if width <= 0 or height <= 0:
            raise ValueError("a PNG needs at least one pixel")
        self.width, self.height = width, height
        self._rows = [bytearray(bytes(background) * width) for _ in range(height)]

    def rect(self, x0: int, y0: int, x1: int, y1: int, colour: RGB) -> None:
        """Fill [x0, x1) × [y0, y1), clipped to the canvas."""
        x0, x1 = max(0, x0), min(self.width, x1)
        y0, y1 = max(0, y0), min(self.height, y1)
        if x0 >= x1:
            return
        span = bytes(colour) * (x1 - x0)
        for y in range(y0, y1):
            self._rows[y][3 * x0:3 * x1] = span

    def pixel(self, x: int, y: int) -> RGB:
        row = self._rows[y]
        return row[3 * x], row[3 * x + 1], row[3 * x + 2]

    def encode(self) -> bytes:
        raw = b"".join(b"\x00" + bytes(row) for row in self._rows)
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9)) \
            + _chunk(b"IEND", b"")

    def save(self, path: Path) -> None:
        path.write_bytes(self.encode())


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data \
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def decode_rgb(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB rows of a PNG this module wrote (for tests and self-checks)."""
    if not data.startswith(SIGNATURE):
        raise ValueError("not a PNG")
    pos, width, height, idat = len(SIGNATURE), 0, 0, b""
    while pos < len(data):
        (size,) = struct.unpack_from(">I", data, pos)
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + size]
        (crc,) = struct.unpack_from(">I", data, pos + 8 + size)
        if zlib.crc32(kind + body) & 0xFFFFFFFF != crc:
            raise ValueError(f"bad CRC in {kind!r}")
        if kind == b"IHDR":
            width, height = struct.unpack_from(">II", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + size
    raw = zlib.decompress(idat)
    stride = 1 + 3 * width
    rows = [raw[i * stride + 1:(i + 1) * stride] for i in range(height)]
    if any(raw[i * stride] != 0 for i in range(height)):
        raise ValueError("only filter type 0 is supported")
    return width, height, rows
