"""SPI framing of the SX1302, and the spidev transport used on a Raspberry Pi.

Every transaction starts with a mux byte choosing the target (the SX1302 itself,
or one of the two SX1250 radios reached through it). SX1302 register frames are
``mux, [0x80 if write] | addr[14:8], addr[7:0], ...``; reads carry one dummy byte
before data comes back. Bulk transfers are cut into 1024-byte transactions, the
most the reference driver ever sends in one go; the address advances per chunk
except for the RX FIFO, which is read at the same address every time.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import structlog

from hal.errors import HalError
from hal.interface import SpiTransport

log = structlog.get_logger(__name__)

MUX_SX1302 = 0x00
MUX_RADIO_A = 0x01
MUX_RADIO_B = 0x02
WRITE_FLAG = 0x80
BURST_CHUNK = 1024
ADDRESS_MAX = 0x7FFF
DEFAULT_SPEED_HZ = 2_000_000


class SpiTransferError(HalError):
    """The transport returned a different number of bytes than it was given."""


def radio_mux(rf_chain: int) -> int:
    """Mux byte for radio A (chain 0) or B (chain 1)."""
    if rf_chain not in (0, 1):
        raise ValueError(f"rf_chain must be 0 or 1, not {rf_chain}")
    return MUX_RADIO_A + rf_chain


def _check_address(address: int, size: int = 1) -> None:
    if address < 0 or address + size - 1 > ADDRESS_MAX:
        raise ValueError(f"address range 0x{address:04X}+{size} outside the 15-bit space")


class Sx1302Spi:
    """Register and memory access to the SX1302 (and commands to its radios) over a transport."""

    def __init__(self, transport: SpiTransport, *, chunk: int = BURST_CHUNK) -> None:
        if chunk < 1:
            raise ValueError("chunk must be positive")
        self.transport = transport
        self.chunk = chunk

    def _xfer(self, frame: bytes) -> bytes:
        reply = self.transport.transfer(frame)
        if len(reply) != len(frame):
            raise SpiTransferError(f"sent {len(frame)} bytes, got {len(reply)} back")
        return reply

    def read(self, address: int) -> int:
        """One register byte: ``mux, aH, aL, dummy, 0`` → the value is the fifth byte clocked in."""
        _check_address(address)
        reply = self._xfer(bytes((MUX_SX1302, address >> 8, address & 0xFF, 0, 0)))
        return reply[4]

    def write(self, address: int, value: int) -> None:
        """One register byte: ``mux, 0x80|aH, aL, value``."""
        _check_address(address)
        if not 0 <= value <= 0xFF:
            raise ValueError(f"byte value out of range: {value}")
        self._xfer(bytes((MUX_SX1302, WRITE_FLAG | (address >> 8), address & 0xFF, value)))

    def _read_chunk(self, address: int, size: int) -> bytes:
        header = bytes((MUX_SX1302, address >> 8, address & 0xFF, 0))
        reply = self._xfer(header + bytes(size))
        return reply[len(header):]

    def prepared_read(self, address: int, size: int) -> Callable[[], bytes]:
        """A one-transaction read of ``size`` bytes at ``address``, framed once.

        For the register an idle gateway reads at every 10 ms poll (the RX fill level):
        after a 10 ms sleep every Python call runs on cold caches, and re-framing and
        re-checking the same read through ``burst_read`` cost more than the read.
        """
        _check_address(address, size)
        if not 1 <= size <= self.chunk:
            raise ValueError(f"a prepared read is one transaction of 1..{self.chunk} bytes")
        frame = bytes((MUX_SX1302, address >> 8, address & 0xFF, 0)) + bytes(size)
        transfer = self.transport.transfer

        def read() -> bytes:
            reply = transfer(frame)
            if len(reply) != len(frame):
                raise SpiTransferError(f"sent {len(frame)} bytes, got {len(reply)} back")
            return reply[4:]

        return read

    def burst_read(self, address: int, size: int, *, fifo: bool = False) -> bytes:
        """``size`` bytes from ``address`` in chunks; ``fifo`` keeps the address fixed."""
        if size < 1:
            raise ValueError("burst of zero length")
        _check_address(address, 1 if fifo else size)
        if size <= self.chunk:  # one transaction: every read but a large FIFO fetch
            return self._read_chunk(address, size)
        out = bytearray()
        addr = address
        while len(out) < size:
            n = min(self.chunk, size - len(out))
            out += self._read_chunk(addr, n)
            if not fifo:
                addr += n
        return bytes(out)

    def burst_write(self, address: int, data: bytes) -> None:
        """Write ``data`` from ``address`` on, in chunks, each chunk at its own address."""
        if not data:
            raise ValueError("burst of zero length")
        _check_address(address, len(data))
        for start in range(0, len(data), self.chunk):
            addr = address + start
            header = bytes((MUX_SX1302, WRITE_FLAG | (addr >> 8), addr & 0xFF))
            self._xfer(header + data[start:start + self.chunk])

    def radio_command(self, rf_chain: int, opcode: int, params: bytes = b"") -> bytes:
        """Send an SX1250 command through the mux; returns the bytes clocked in during ``params``.

        Reads use the same frame: the caller passes placeholder parameter bytes and
        the radio's answer comes back at those positions.
        """
        if not 0 <= opcode <= 0xFF:
            raise ValueError(f"opcode out of range: {opcode}")
        reply = self._xfer(bytes((radio_mux(rf_chain), opcode)) + params)
        return reply[2:]


_SPIDEV_RE = re.compile(r"spidev(\d+)\.(\d+)$")


def parse_spidev_name(device: str) -> tuple[int, int]:
    """(bus, chip-select) from a ``/dev/spidevB.C`` path."""
    match = _SPIDEV_RE.search(device)
    if match is None:
        raise ValueError(f"not a spidev device path: {device!r} (expected …/spidevB.C)")
    return int(match.group(1)), int(match.group(2))


class SpidevTransport:
    """The Linux spidev driver: mode 0, 8-bit words, chip-select held for each transfer."""

    def __init__(self, device: str, *, speed_hz: int = DEFAULT_SPEED_HZ) -> None:
        import spidev  # imported here: only a Raspberry Pi has it

        bus, cs = parse_spidev_name(device)
        spi: Any = spidev.SpiDev()
        try:
            spi.open(bus, cs)
        except OSError as exc:
            raise HalError(f"cannot open {device}: {exc} — is SPI enabled?") from exc
        spi.mode = 0
        spi.bits_per_word = 8
        spi.max_speed_hz = speed_hz
        self._spi = spi
        self.device = device

    def transfer(self, data: bytes) -> bytes:
        try:
            return bytes(self._spi.xfer2(list(data)))
        except OSError as exc:
            raise SpiTransferError(f"SPI transfer on {self.device} failed: {exc}") from exc

    def close(self) -> None:
        self._spi.close()
