"""An emulated USB microcontroller in front of the emulated SX1302, as a serial port object.

It parses the host's requests byte by byte as a real MCU would (header, then the
announced payload), forwards each SPI frame to :class:`Sx1302Emulator` and queues
the answer for ``read``. It also keeps its own GPIO state so tests can check that
the host powered the board and pulsed the reset. Fault modes: ``silent`` (nothing
answers: wrong port, MCU hung), ``version`` (other firmware), ``garble`` (answers
with a wrong command byte, as on a port another program also writes to).
"""

from __future__ import annotations

import struct

from hal.emulator.chip import Sx1302Emulator
from hal.usb_mcu import (
    ACK_BIT,
    HEADER,
    REQ_GET_STATUS,
    REQ_MULTIPLE_SPI,
    REQ_PING,
    REQ_WRITE_GPIO,
    SPI_REQ_META,
    SPI_REQ_READ_WRITE,
)

UNIQUE_ID = bytes(range(0x10, 0x1C))


class EmulatedUsbMcu:
    """``read``/``write``/``close`` like ``serial.Serial``; answers complete requests."""

    def __init__(self, chip: Sx1302Emulator, *, version: str = "V01.00.00",
                 fault: str | None = None) -> None:
        self.chip = chip
        self.version = version
        self.fault = fault
        self.gpio: dict[tuple[int, int], int] = {}
        self.gpio_writes: list[tuple[int, int, int]] = []
        self.requests = 0
        self._in = bytearray()
        self._out = bytearray()
        self.closed = False

    def write(self, data: bytes) -> int:
        self._in += data
        while len(self._in) >= HEADER.size:
            req_id, size, command = HEADER.unpack_from(self._in)
            if len(self._in) < HEADER.size + size:
                break
            payload = bytes(self._in[HEADER.size:HEADER.size + size])
            del self._in[:HEADER.size + size]
            self.requests += 1
            if self.fault != "silent":
                self._answer(req_id, command, payload)
        return len(data)

    def _answer(self, req_id: int, command: int, payload: bytes) -> None:
        body = self._handle(command, payload)
        ack = command | ACK_BIT if self.fault != "garble" else 0x47
        self._out += HEADER.pack(req_id, len(body), ack) + body

    def _handle(self, command: int, payload: bytes) -> bytes:
        if command == REQ_PING:
            return UNIQUE_ID + self.version.encode("ascii")[:9].ljust(9, b"\0")
        if command == REQ_GET_STATUS:
            return struct.pack(">Ih", 12_345, 3150)
        if command == REQ_WRITE_GPIO:
            port, pin, value = payload
            self.gpio[(port, pin)] = value
            self.gpio_writes.append((port, pin, value))
            return b"\x00"
        if command == REQ_MULTIPLE_SPI:
            return self._spi(payload)
        return b""

    def _spi(self, payload: bytes) -> bytes:
        out = bytearray()
        i = 0
        while i + SPI_REQ_META <= len(payload):
            req_id, kind, _target, size = struct.unpack_from(">BBBH", payload, i)
            frame = payload[i + SPI_REQ_META:i + SPI_REQ_META + size]
            status = 0 if kind == SPI_REQ_READ_WRITE and len(frame) == size else 2
            answer = self.chip.transfer(frame) if status == 0 else b""
            out += struct.pack(">BBBH", req_id, kind, status, len(answer)) + answer
            i += SPI_REQ_META + size
        return bytes(out)

    def read(self, size: int = 1) -> bytes:
        out = bytes(self._out[:size])
        del self._out[:size]
        return out

    def close(self) -> None:
        self.closed = True
