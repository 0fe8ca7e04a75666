"""SX1302 SPI framing: mux byte, write flag, dummy byte, chunking, FIFO reads at one address."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable

import pytest

from hal.spi import (
    BURST_CHUNK,
    SpidevTransport,
    SpiTransferError,
    Sx1302Spi,
    parse_spidev_name,
)


class ScriptedTransport:
    """Records every frame; answers with ``answer(frame)`` (zeros by default)."""

    def __init__(self, answer: Callable[[bytes], bytes] | None = None) -> None:
        self.frames: list[bytes] = []
        self.answer = answer or (lambda frame: bytes(len(frame)))

    def transfer(self, data: bytes) -> bytes:
        self.frames.append(bytes(data))
        return self.answer(bytes(data))

    def close(self) -> None:
        pass


def test_single_read_frame_and_value_in_fifth_byte() -> None:
    t = ScriptedTransport(lambda f: bytes((9, 9, 9, 9, 0x10)))
    assert Sx1302Spi(t).read(0x5606) == 0x10
    assert t.frames == [bytes((0x00, 0x56, 0x06, 0x00, 0x00))]


def test_single_write_sets_write_flag_on_high_address_byte() -> None:
    t = ScriptedTransport()
    Sx1302Spi(t).write(0x6180, 0x03)
    assert t.frames == [bytes((0x00, 0x80 | 0x61, 0x80, 0x03))]


def test_burst_read_has_one_dummy_byte_then_data() -> None:
    t = ScriptedTransport(lambda f: bytes(4) + bytes(range(1, len(f) - 3)))
    assert Sx1302Spi(t).burst_read(0x6101, 8) == bytes(range(1, 9))
    assert t.frames == [bytes((0x00, 0x61, 0x01, 0x00)) + bytes(8)]


def test_a_prepared_read_sends_the_burst_read_frame_each_call() -> None:
    t = ScriptedTransport(lambda f: bytes(4) + bytes((0x01, 0x2C)))
    read = Sx1302Spi(t).prepared_read(0x58C8, 2)
    assert t.frames == []  # framing it sends nothing
    assert read() == read() == bytes((0x01, 0x2C))
    t2 = ScriptedTransport(lambda f: bytes(4) + bytes((0x01, 0x2C)))
    assert Sx1302Spi(t2).burst_read(0x58C8, 2) == bytes((0x01, 0x2C))
    assert t.frames == t2.frames * 2


@pytest.mark.parametrize(("address", "size"), [(0x7FFF, 2), (0x10, 0), (0x10, BURST_CHUNK + 1)])
def test_a_prepared_read_outside_one_transaction_is_refused(address: int, size: int) -> None:
    with pytest.raises(ValueError):
        Sx1302Spi(ScriptedTransport()).prepared_read(address, size)


def test_a_short_reply_to_a_prepared_read_is_a_transfer_error() -> None:
    read = Sx1302Spi(ScriptedTransport(lambda f: f[:-1])).prepared_read(0x58C8, 2)
    with pytest.raises(SpiTransferError):
        read()


def test_burst_read_chunks_advance_the_address() -> None:
    t = ScriptedTransport()
    Sx1302Spi(t).burst_read(0x0000, 2 * BURST_CHUNK + 10)
    assert [len(f) - 4 for f in t.frames] == [BURST_CHUNK, BURST_CHUNK, 10]
    assert [f[1:3] for f in t.frames] == [b"\x00\x00", b"\x04\x00", b"\x08\x00"]


def test_fifo_burst_read_keeps_the_address_for_every_chunk() -> None:
    t = ScriptedTransport(lambda f: bytes(4) + bytes([f[1] ^ 0x55]) * (len(f) - 4))
    data = Sx1302Spi(t).burst_read(0x4000, BURST_CHUNK + 1, fifo=True)
    assert len(data) == BURST_CHUNK + 1
    assert [f[:3] for f in t.frames] == [b"\x00\x40\x00", b"\x00\x40\x00"]


def test_burst_write_chunks_each_at_its_own_address() -> None:
    t = ScriptedTransport()
    payload = bytes(i & 0xFF for i in range(BURST_CHUNK + 3))
    Sx1302Spi(t).burst_write(0x2000, payload)
    assert t.frames[0][:3] == bytes((0x00, 0x80 | 0x20, 0x00))
    assert t.frames[1][:3] == bytes((0x00, 0x80 | 0x24, 0x00))
    assert t.frames[0][3:] + t.frames[1][3:] == payload


def test_radio_command_goes_through_the_mux_and_returns_parameter_positions() -> None:
    t = ScriptedTransport(lambda f: bytes((0, 0x22, 0x50)))
    reply = Sx1302Spi(t).radio_command(1, 0xC0, b"\x00")
    assert t.frames == [bytes((0x02, 0xC0, 0x00))]
    assert reply == b"\x50"


@pytest.mark.parametrize(("call", "args"), [
    ("read", (0x8000,)), ("write", (0x10, 256)), ("burst_read", (0x10, 0)),
    ("burst_write", (0x10, b"")), ("burst_read", (0x7FFF, 2)),
])
def test_bad_arguments_are_refused_before_any_transfer(call: str, args: tuple[object, ...]) -> None:
    t = ScriptedTransport()
    with pytest.raises(ValueError):
        getattr(Sx1302Spi(t), call)(*args)
    assert t.frames == []


def test_short_reply_is_a_transfer_error() -> None:
    with pytest.raises(SpiTransferError):
        Sx1302Spi(ScriptedTransport(lambda f: f[:-1])).read(0x5606)


def test_spidev_names() -> None:
    assert parse_spidev_name("/dev/spidev0.0") == (0, 0)
    assert parse_spidev_name("/dev/spidev1.2") == (1, 2)
    with pytest.raises(ValueError):
        parse_spidev_name("/dev/ttyACM0")


class FakeSpiDev:
    def __init__(self) -> None:
        self.opened: tuple[int, int] | None = None
        self.mode = -1
        self.bits_per_word = -1
        self.max_speed_hz = -1
        self.sent: list[list[int]] = []

    def open(self, bus: int, cs: int) -> None:
        self.opened = (bus, cs)

    def xfer2(self, data: list[int]) -> list[int]:
        self.sent.append(data)
        return [0xAA] * len(data)

    def close(self) -> None:
        pass


def test_spidev_transport_configures_mode0_8bit_2mhz_and_uses_xfer2(
        monkeypatch: pytest.MonkeyPatch) -> None:
    devices: list[FakeSpiDev] = []

    def make() -> FakeSpiDev:
        devices.append(FakeSpiDev())
        return devices[-1]

    fake = types.ModuleType("spidev")
    fake.SpiDev = make  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "spidev", fake)
    transport = SpidevTransport("/dev/spidev0.1")
    dev = devices[0]
    assert (dev.opened, dev.mode, dev.bits_per_word, dev.max_speed_hz) == ((0, 1), 0, 8, 2_000_000)
    assert transport.transfer(b"\x00\x56\x06\x00\x00") == b"\xaa" * 5
    assert dev.sent == [[0x00, 0x56, 0x06, 0x00, 0x00]]
