"""Register fields as data: bit extraction, sign, read-modify-write, read-only, reset image."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hal.registers import FIELDS, Field, RegisterError, Registers, reset_bytes, tx_field
from hal.spi import Sx1302Spi


class MemoryTransport:
    """A plain byte memory behind SX1302 framing, counting transactions."""

    def __init__(self) -> None:
        self.mem = bytearray(0x8000)
        self.frames = 0

    def transfer(self, data: bytes) -> bytes:
        self.frames += 1
        addr = ((data[1] & 0x7F) << 8) | data[2]
        if data[1] & 0x80:
            self.mem[addr:addr + len(data) - 3] = data[3:]
            return bytes(len(data))
        return bytes(4) + bytes(self.mem[addr:addr + len(data) - 4])

    def close(self) -> None:
        pass


def test_signed_field_sign_extends_and_round_trips() -> None:
    f = Field("X", 0x10, offset=0, width=5, signed=True)
    assert f.extract(0b0001_1110) == -2
    assert f.extract(f.insert(0xE0, -16)) == -16
    assert f.insert(0xE0, -1) == 0xFF
    with pytest.raises(RegisterError):
        f.insert(0, 16)


@given(st.sampled_from(sorted(FIELDS)), st.integers(0, 255), st.data())
def test_insert_changes_only_the_field_bits(name: str, byte: int, data: st.DataObject) -> None:
    f = FIELDS[name]
    low = -(1 << (f.width - 1)) if f.signed else 0
    high = (1 << (f.width - 1)) - 1 if f.signed else (1 << f.width) - 1
    value = data.draw(st.integers(low, high))
    out = f.insert(byte, value)
    assert f.extract(out) == value
    assert out & ~f.mask & 0xFF == byte & ~f.mask & 0xFF


def test_partial_field_write_is_read_modify_write() -> None:
    t = MemoryTransport()
    t.mem[0x5605] = 0b0000_0101
    regs = Registers(Sx1302Spi(t))
    regs.write("COMMON_GEN_GLOBAL_EN", 1)
    assert t.mem[0x5605] == 0b0000_1101
    assert t.frames == 2  # one read, one write


def test_whole_byte_field_is_written_directly() -> None:
    t = MemoryTransport()
    Registers(Sx1302Spi(t)).write("OTP_BYTE_ADDR", 7)
    assert t.mem[0x6180] == 7
    assert t.frames == 1


def test_read_only_field_refuses_writes_without_touching_the_bus() -> None:
    t = MemoryTransport()
    with pytest.raises(RegisterError):
        Registers(Sx1302Spi(t)).write("COMMON_VERSION", 0x11)
    assert t.frames == 0


def test_unknown_field_is_a_register_error() -> None:
    with pytest.raises(RegisterError):
        Registers(Sx1302Spi(MemoryTransport())).read("NOT_A_FIELD")


def test_tx_chains_are_0x200_apart() -> None:
    for name in FIELDS:
        if name.startswith("TX_A_"):
            b = FIELDS["TX_B_" + name[5:]]
            a = FIELDS[name]
            assert (b.address - a.address, b.offset, b.width) == (0x200, a.offset, a.width)
    assert tx_field(1, "AGC_TX_PWR") == "TX_B_AGC_TX_PWR"
    with pytest.raises(ValueError):
        tx_field(2, "AGC_TX_PWR")


def test_reset_image_composes_field_defaults_per_byte() -> None:
    image = reset_bytes()
    assert image[0x5606] == 0x10  # version
    assert image[0x5601] == 0b0000_1011  # host radio ctrl + both SX1250 modes
    assert image[0x5205] == 187 and image[0x5206] == 128  # TX start delay reset value
    assert image[0x5800] == 0 and image[0x5801] == 128


def test_known_addresses_from_the_reference_map() -> None:
    expected = {"RX_TOP_RX_BUFFER_NB_BYTES_MSB": 0x58C8, "OTP_RD_DATA": 0x6181,
                "TX_A_TX_FSM_STATUS": 0x5211, "TX_A_AGC_TX_PWR": 0x520D,
                "TX_B_TXRX_CFG0_3_PAYLOAD_LENGTH": 0x5463, "FSK_FREQ_MSB": 0x5B50}
    assert {n: FIELDS[n].address for n in expected} == expected
