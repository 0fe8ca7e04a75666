"""The SX1302 behind a USB microcontroller (CoreCell USB, RAK5146 USB): SPI over a serial link.

On these boards the host never touches SPI or GPIO: an STM32 enumerates as a
CDC-ACM serial port (``/dev/ttyACM0``) and runs small commands for it: ping (its
unique id and firmware version), status, GPIO write (the SX1302's power and reset
lines) and "multiple SPI", a batch of raw SPI frames it clocks to the SX1302 and
answers with the bytes clocked back. Every message is a 4-byte header (request id,
payload size big-endian, command) and the payload; an answer carries the command
with bit 6 set. Facts from Semtech's reference host driver (sx1302_hal 2.1.0,
loragw_mcu.c / loragw_usb.c); this is our own implementation.

The rest of the driver is unchanged: :class:`UsbSpiTransport` is an
:class:`~hal.interface.SpiTransport`, so the same register, bring-up, RX and TX
code runs over USB as over spidev. Each SPI frame travels as one request; the
driver's bursts are already chunked (1 KiB) well below the MCU's 4 KiB limit.
"""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from hal.errors import HalError

REQ_PING = 0x00
REQ_GET_STATUS = 0x01
REQ_RESET = 0x03
REQ_WRITE_GPIO = 0x04
REQ_MULTIPLE_SPI = 0x05
ACK_BIT = 0x40
CMD_ERROR = 0xFF

SPI_REQ_READ_WRITE = 0x01
SPI_TARGET_SX1302 = 0x00
MAX_COMMAND = 4200
"""The largest message payload either side sends."""
MAX_SPI_BULK = 4096
"""The MCU's buffer for one batch of SPI requests (request metadata included)."""
SPI_REQ_META = 5
"""Request id, type, target, size (2) before each SPI frame."""

EXPECTED_FIRMWARE = "01.00.00"
"""The MCU firmware this protocol is written for (the version string after its
release/debug letter, e.g. "V01.00.00")."""

GPIO_PORT_A = 0
PIN_POWER_EN = 1
PIN_SX1302_RESET = 2
PIN_SX1261_NRESET = 8

ANSWER_TIMEOUT_S = 1.0
HEADER = struct.Struct(">BHB")

log = structlog.get_logger("hal.usb_mcu")


class McuError(HalError):
    """The USB microcontroller did not answer, answered garbage, or refused a request."""


class SerialPort(Protocol):
    """What the link needs of ``serial.Serial`` (opened with a short read timeout)."""

    def read(self, size: int = 1) -> bytes: ...

    def write(self, data: bytes) -> int | None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class McuInfo:
    unique_id: bytes
    version: str


@dataclass(frozen=True, slots=True)
class McuStatus:
    uptime_ms: int
    temperature_c: float


class UsbMcuLink:
    """Request/answer exchanges with the MCU, each checked before its payload is trusted."""

    def __init__(self, port: SerialPort, name: str, *,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self.port = port
        self.name = name
        self._clock = clock
        self._rng = rng or random.Random()

    def request(self, command: int, payload: bytes = b"") -> bytes:
        """Send one request and return its answer's payload."""
        header = HEADER.pack(self._rng.randrange(255), len(payload), command)
        self.port.write(header + payload)
        answer = self._read_exactly(HEADER.size, command)
        _req_id, size, got = HEADER.unpack(answer)
        if got == CMD_ERROR:
            raise McuError(f"the MCU on {self.name} refused command 0x{command:02X}")
        if got != command | ACK_BIT:
            raise McuError(f"the MCU on {self.name} answered command 0x{got:02X} to "
                           f"0x{command:02X}: garbled link or another program on the port")
        if size > MAX_COMMAND:
            raise McuError(f"the MCU on {self.name} announced a {size}-byte answer")
        return self._read_exactly(size, command)

    def _read_exactly(self, size: int, command: int) -> bytes:
        out = bytearray()
        deadline = self._clock() + ANSWER_TIMEOUT_S
        while len(out) < size:
            chunk = self.port.read(size - len(out))
            if chunk:
                out += chunk
            elif self._clock() > deadline:
                raise McuError(f"no answer from the MCU on {self.name} to command "
                               f"0x{command:02X} within {ANSWER_TIMEOUT_S:g} s "
                               "(is it a concentrator's USB port?)")
        return bytes(out)

    def ping(self) -> McuInfo:
        payload = self.request(REQ_PING)
        if len(payload) < 21:
            raise McuError(f"short ping answer ({len(payload)} bytes) from {self.name}")
        version = payload[12:21].split(b"\0", 1)[0].decode("ascii", "replace")
        return McuInfo(unique_id=payload[:12], version=version)

    def status(self) -> McuStatus:
        payload = self.request(REQ_GET_STATUS)
        if len(payload) < 6:
            raise McuError(f"short status answer ({len(payload)} bytes) from {self.name}")
        uptime, temperature = struct.unpack(">Ih", payload[:6])
        return McuStatus(uptime, temperature / 100)

    def gpio_write(self, port: int, pin: int, value: int) -> None:
        payload = self.request(REQ_WRITE_GPIO, bytes((port, pin, value)))
        if not payload or payload[0] != 0:
            raise McuError(f"the MCU on {self.name} could not set GPIO {port}.{pin}")

    def spi_transfer(self, frame: bytes) -> bytes:
        """One raw SPI frame to the SX1302; the bytes clocked back, same length."""
        if len(frame) + SPI_REQ_META > MAX_SPI_BULK:
            raise McuError(f"SPI frame of {len(frame)} bytes exceeds the MCU's "
                           f"{MAX_SPI_BULK - SPI_REQ_META}")
        request = struct.pack(">BBBH", 0, SPI_REQ_READ_WRITE, SPI_TARGET_SX1302, len(frame))
        answer = self.request(REQ_MULTIPLE_SPI, request + frame)
        if len(answer) < SPI_REQ_META:
            raise McuError(f"short SPI answer ({len(answer)} bytes) from {self.name}")
        _req_id, kind, status, size = struct.unpack(">BBBH", answer[:SPI_REQ_META])
        if kind != SPI_REQ_READ_WRITE or status != 0 or size != len(frame) \
                or len(answer) != SPI_REQ_META + size:
            raise McuError(f"SPI request failed on {self.name} (type {kind}, status {status}, "
                           f"{size} of {len(frame)} bytes)")
        return answer[SPI_REQ_META:]


class UsbSpiTransport:
    """:class:`~hal.interface.SpiTransport` over the MCU link."""

    def __init__(self, link: UsbMcuLink) -> None:
        self.link = link

    def transfer(self, data: bytes) -> bytes:
        return self.link.spi_transfer(bytes(data))

    def close(self) -> None:
        self.link.port.close()


def open_link(port: SerialPort, name: str, *, sleep: Callable[[float], None] = time.sleep,
              clock: Callable[[], float] = time.monotonic) -> UsbMcuLink:
    """Check the MCU and its firmware, then power the radio board and pulse its resets."""
    link = UsbMcuLink(port, name, clock=clock)
    info = link.ping()
    if info.version[1:] != EXPECTED_FIRMWARE:
        # the reference host driver only warns too: the protocol has been stable
        log.warning("usb_mcu_firmware_unexpected", port=name, version=info.version,
                    expected=EXPECTED_FIRMWARE)
    mcu = link.status()
    log.info("usb_mcu_found", port=name, version=info.version, uptime_ms=mcu.uptime_ms,
             temperature_c=mcu.temperature_c)
    link.gpio_write(GPIO_PORT_A, PIN_POWER_EN, 1)
    link.gpio_write(GPIO_PORT_A, PIN_SX1302_RESET, 1)
    sleep(0.01)
    link.gpio_write(GPIO_PORT_A, PIN_SX1302_RESET, 0)
    link.gpio_write(GPIO_PORT_A, PIN_SX1261_NRESET, 0)
    sleep(0.01)
    link.gpio_write(GPIO_PORT_A, PIN_SX1261_NRESET, 1)
    return link
