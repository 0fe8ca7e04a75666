"""SX1302 register fields as data, and read-modify-write access to them.

A field is a run of bits inside one register byte. The table lists every field
this driver touches (addresses, bit positions, sign, read-only flag and reset
value per Semtech's reference register map); the emulator builds its reset
register file from the same defaults. Fields narrower than a byte are written by
read-modify-write on the host, as the chip has no bit-level access.

The two TX chains have identical layouts 0x200 apart, so their fields are
generated from one list of offsets, named ``TX_A_...`` and ``TX_B_...``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from hal.errors import HalError
from hal.register_map_modem import MODEM_ROWS
from hal.spi import Sx1302Spi

RX_FIFO_ADDR = 0x4000
TX_PAYLOAD_ADDR = (0x5300, 0x5500)
TX_BASE = (0x5200, 0x5400)
TIMESTAMP_BLOCK = 0x6101
"""PPS-latched then free-running 32 MHz counters, 8 bytes big-endian."""
RX_NB_BYTES_MSB = 0x58C8
IF_FREQ_MULTI_SF = 0x5800
IF_FREQ_SERVICE = 0x5B00
IF_FREQ_FSK = 0x5B50


class RegisterError(HalError):
    """A write to a read-only field or a value that does not fit the field."""


@dataclass(frozen=True, slots=True)
class Field:
    """Bits ``offset .. offset+width-1`` of the byte at ``address``."""

    name: str
    address: int
    offset: int = 0
    width: int = 8
    signed: bool = False
    read_only: bool = False
    default: int = 0
    page: int = 0

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.offset

    def extract(self, byte: int) -> int:
        """The field's value inside ``byte``, sign-extended when the field is signed."""
        raw = (byte & self.mask) >> self.offset
        if self.signed and raw & (1 << (self.width - 1)):
            raw -= 1 << self.width
        return raw

    def insert(self, byte: int, value: int) -> int:
        """``byte`` with the field replaced by ``value`` (two's complement for signed fields)."""
        low = -(1 << (self.width - 1)) if self.signed else 0
        high = (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1
        if not low <= value <= high:
            raise RegisterError(f"{self.name}: {value} does not fit {self.width} bits")
        bits = (value & ((1 << self.width) - 1)) << self.offset
        return (byte & ~self.mask & 0xFF) | bits


# name, address, offset, width, signed, read_only, default
_Row = tuple[str, int, int, int, bool, bool, int]

AGC_MCU_BASE = 0x5780
ARB_MCU_BASE = 0x6080
AGC_FW_RAM = 0x0000
ARB_FW_RAM = 0x2000
MCU_FW_SIZE = 8192
"""Each MCU's firmware RAM: 4,096 14-bit words stored as 2 bytes each."""

_COMMON: tuple[_Row, ...] = (
    ("COMMON_PAGE", 0x5600, 0, 2, False, False, 0),
    ("COMMON_CTRL0_CLK32_RIF_CTRL", 0x5601, 4, 1, False, False, 0),
    ("COMMON_CTRL0_HOST_RADIO_CTRL", 0x5601, 3, 1, False, False, 1),
    ("COMMON_CTRL0_SX1261_MODE_RADIO_B", 0x5601, 1, 1, False, False, 1),
    ("COMMON_CTRL0_SX1261_MODE_RADIO_A", 0x5601, 0, 1, False, False, 1),
    ("COMMON_GEN_GLOBAL_EN", 0x5605, 3, 1, False, False, 0),
    ("COMMON_GEN_FSK_MODEM_ENABLE", 0x5605, 2, 1, False, False, 0),
    ("COMMON_GEN_CONCENTRATOR_MODEM_ENABLE", 0x5605, 1, 1, False, False, 0),
    ("COMMON_GEN_MBWSSF_MODEM_ENABLE", 0x5605, 0, 1, False, False, 0),
    ("COMMON_VERSION", 0x5606, 0, 8, False, True, 0x10),
    ("GPIO_DIR_L", 0x5641, 0, 8, False, False, 0),
    ("GPIO_OUT_L", 0x5643, 0, 8, False, False, 0),
    ("AGC_MCU_CTRL_CLK_EN", 0x5780, 4, 1, False, False, 1),
    ("AGC_MCU_CTRL_FORCE_HOST_FE_CTRL", 0x5780, 3, 1, False, False, 0),
    ("AGC_MCU_CTRL_MCU_CLEAR", 0x5780, 2, 1, False, False, 1),
    ("AGC_MCU_CTRL_HOST_PROG", 0x5780, 1, 1, False, False, 0),
    ("AGC_MCU_CTRL_PARITY_ERROR", 0x5780, 0, 1, False, True, 0),
    ("AGC_MCU_STATUS", 0x5781, 0, 8, False, True, 0),
    ("AGC_MCU_RF_EN_A_RADIO_RST", 0x5783, 3, 1, False, False, 0),
    ("AGC_MCU_RF_EN_A_RADIO_EN", 0x5783, 2, 1, False, False, 0),
    ("AGC_MCU_RF_EN_A_PA_EN", 0x5783, 1, 1, False, False, 0),
    ("AGC_MCU_RF_EN_A_LNA_EN", 0x5783, 0, 1, False, False, 0),
    ("AGC_MCU_RF_EN_B_RADIO_RST", 0x5784, 3, 1, False, False, 0),
    ("AGC_MCU_RF_EN_B_RADIO_EN", 0x5784, 2, 1, False, False, 0),
    ("AGC_MCU_RF_EN_B_PA_EN", 0x5784, 1, 1, False, False, 0),
    ("AGC_MCU_RF_EN_B_LNA_EN", 0x5784, 0, 1, False, False, 0),
    # mailbox n is written at 0x578C - n and read back at 0x5790 - n
    *((f"AGC_MCU_MAILBOX_WR_{n}", 0x578C - n, 0, 8, False, False, 0) for n in range(4)),
    *((f"AGC_MCU_MAILBOX_RD_{n}", 0x5790 - n, 0, 8, False, True, 0) for n in range(4)),
    ("CLK_CTRL_CLK_SEL_CLKDIV_EN", 0x57C0, 2, 1, False, False, 0),
    ("CLK_CTRL_CLK_SEL_CLK_RADIO_B_SEL", 0x57C0, 1, 1, False, False, 0),
    ("CLK_CTRL_CLK_SEL_CLK_RADIO_A_SEL", 0x57C0, 0, 1, False, False, 0),
)

_IF_DEFAULTS = ((0, 128), (1, 128), (30, 128), (0, 128), (0, 50), (0, 60), (0, 70), (0, 80))

_RX_TOP: tuple[_Row, ...] = (
    *(row for i, (msb, lsb) in enumerate(_IF_DEFAULTS) for row in (
        (f"RX_TOP_FREQ_{i}_MSB", IF_FREQ_MULTI_SF + 2 * i, 0, 5, False, False, msb),
        (f"RX_TOP_FREQ_{i}_LSB", IF_FREQ_MULTI_SF + 2 * i + 1, 0, 8, False, False, lsb),
    )),
    ("RX_TOP_RADIO_SELECT", 0x5810, 0, 8, False, False, 0),
    ("RX_TOP_CORR_CLOCK_ENABLE", 0x5820, 0, 8, False, False, 0xFF),
    ("RX_TOP_CORRELATOR_EN", 0x5821, 0, 8, False, False, 0),
    ("RX_TOP_CORRELATOR_SF_EN", 0x5822, 0, 8, False, False, 0xFF),
    ("RX_TOP_FRAME_SYNCH0_SF5_PEAK1_POS", 0x588A, 0, 5, True, False, 2),
    ("RX_TOP_FRAME_SYNCH1_SF5_PEAK2_POS", 0x588B, 0, 5, True, False, 4),
    ("RX_TOP_FRAME_SYNCH0_SF6_PEAK1_POS", 0x588C, 0, 5, True, False, 2),
    ("RX_TOP_FRAME_SYNCH1_SF6_PEAK2_POS", 0x588D, 0, 5, True, False, 4),
    ("RX_TOP_FRAME_SYNCH0_SF7TO12_PEAK1_POS", 0x588E, 0, 5, True, False, 2),
    ("RX_TOP_FRAME_SYNCH1_SF7TO12_PEAK2_POS", 0x588F, 0, 5, True, False, 4),
    ("RX_TOP_RX_BUFFER_LEGACY_TIMESTAMP", 0x58C0, 2, 1, False, False, 0),
    ("RX_TOP_RX_BUFFER_TIMESTAMP_CFG_MAX_TS_METRICS", 0x58C1, 0, 8, False, False, 255),
    ("RX_TOP_TIMESTAMP_ENABLE", 0x58B3, 3, 1, False, False, 0),
    ("RX_TOP_TIMESTAMP_NB_SYMB", 0x58B3, 0, 3, False, False, 7),
    ("RX_TOP_RX_BUFFER_NB_BYTES_MSB", RX_NB_BYTES_MSB, 0, 5, False, True, 0),
    ("RX_TOP_RX_BUFFER_NB_BYTES_LSB", RX_NB_BYTES_MSB + 1, 0, 8, False, True, 0),
    ("SERVICE_FREQ_MSB", IF_FREQ_SERVICE, 0, 5, False, False, 0),
    ("SERVICE_FREQ_LSB", IF_FREQ_SERVICE + 1, 0, 8, False, False, 128),
    ("SERVICE_RADIO_SELECT", 0x5B02, 0, 1, False, False, 0),
    ("SERVICE_MODEM_BW", 0x5B21, 4, 4, False, False, 4),
    ("SERVICE_MODEM_SF", 0x5B21, 0, 4, False, False, 7),
    ("SERVICE_MODEM_EN", 0x5B22, 3, 1, False, False, 0),
    ("SERVICE_FRAME_SYNCH0_PEAK1_POS", 0x5B2E, 0, 5, True, False, 2),
    ("SERVICE_FRAME_SYNCH1_PEAK2_POS", 0x5B2F, 0, 5, True, False, 4),
    ("FSK_FREQ_MSB", IF_FREQ_FSK, 0, 5, False, False, 0),
    ("FSK_FREQ_LSB", IF_FREQ_FSK + 1, 0, 8, False, False, 128),
    ("FSK_RADIO_SELECT", 0x5B54, 1, 1, False, False, 0),
    ("FSK_BIT_RATE_MSB", 0x5B5B, 0, 8, False, False, 0),
    ("FSK_BIT_RATE_LSB", 0x5B5C, 0, 8, False, False, 0),
)

_ARB: tuple[_Row, ...] = (
    ("ARB_MCU_CTRL_CLK_EN", 0x6080, 5, 1, False, False, 1),
    ("ARB_MCU_CTRL_RADIO_RST", 0x6080, 4, 1, False, False, 0),
    ("ARB_MCU_CTRL_FORCE_HOST_FE_CTRL", 0x6080, 3, 1, False, False, 0),
    ("ARB_MCU_CTRL_MCU_CLEAR", 0x6080, 2, 1, False, False, 1),
    ("ARB_MCU_CTRL_HOST_PROG", 0x6080, 1, 1, False, False, 0),
    ("ARB_MCU_CTRL_PARITY_ERROR", 0x6080, 0, 1, False, True, 0),
    ("ARB_MCU_STATUS", 0x6081, 0, 8, False, True, 0),
    *((f"ARB_DEBUG_CFG_{n}", 0x6089 + n, 0, 8, False, False, 0) for n in range(4)),
    *((f"ARB_DEBUG_STS_{n}", 0x608D + n, 0, 8, False, True, 0) for n in range(16)),
)

_TIMESTAMP_OTP: tuple[_Row, ...] = (
    ("TIMESTAMP_GPS_CTRL_GPS_POL", 0x6100, 1, 1, False, False, 0),
    ("TIMESTAMP_GPS_CTRL_GPS_EN", 0x6100, 0, 1, False, False, 0),
    ("OTP_BYTE_ADDR", 0x6180, 0, 8, False, False, 0),
    ("OTP_RD_DATA", 0x6181, 0, 8, False, True, 0),
)

# suffix, offset from the chain base, bit offset, width, signed, read_only, default
_TX_CHAIN: tuple[_Row, ...] = (
    ("TX_TRIG_GPS", 0, 2, 1, False, False, 0),
    ("TX_TRIG_DELAYED", 0, 1, 1, False, False, 0),
    ("TX_TRIG_IMMEDIATE", 0, 0, 1, False, False, 0),
    ("TIMER_TRIG_BYTE3", 1, 0, 8, False, False, 0),
    ("TIMER_TRIG_BYTE2", 2, 0, 8, False, False, 0),
    ("TIMER_TRIG_BYTE1", 3, 0, 8, False, False, 0),
    ("TIMER_TRIG_BYTE0", 4, 0, 8, False, False, 0),
    ("TX_START_DELAY_MSB", 5, 0, 8, False, False, 187),
    ("TX_START_DELAY_LSB", 6, 0, 8, False, False, 128),
    ("TX_CTRL_WRITE_BUFFER", 7, 0, 1, False, False, 0),
    ("GEN_CFG_0_MODULATION_TYPE", 9, 0, 1, False, False, 0),
    ("AGC_TX_BW", 12, 0, 8, False, False, 0),
    ("AGC_TX_PWR", 13, 0, 8, False, False, 0),
    ("TX_FSM_STATUS", 17, 0, 8, False, True, 0),
    ("TX_RFFE_IF_CTRL_TX_CLK_EDGE", 32, 4, 1, False, False, 1),
    ("TX_RFFE_IF_CTRL_TX_MODE", 32, 3, 1, False, False, 1),
    ("TX_RFFE_IF_CTRL_TX_IF_DST", 32, 2, 1, False, False, 0),
    ("TX_RFFE_IF_CTRL_TX_IF_SRC", 32, 0, 2, False, False, 0),
    ("TX_RFFE_IF_CTRL2_PLL_DIV_CTRL_AGC", 33, 0, 1, False, False, 0),
    ("TX_RFFE_IF_IQ_GAIN", 34, 0, 2, False, False, 0),
    ("FREQ_RF_H", 37, 0, 8, False, False, 108),
    ("FREQ_RF_M", 38, 0, 8, False, False, 144),
    ("FREQ_RF_L", 39, 0, 8, False, False, 0),
    ("FREQ_DEV_H", 40, 0, 4, False, False, 0),
    ("FREQ_DEV_L", 41, 0, 8, False, False, 0),
    ("FSK_PKT_LEN", 64, 0, 8, False, False, 15),
    ("FSK_CFG_0_CRC_IBM", 65, 4, 1, False, False, 0),
    ("FSK_CFG_0_DCFREE_ENC", 65, 2, 2, False, False, 0),
    ("FSK_CFG_0_CRC_EN", 65, 1, 1, False, False, 1),
    ("FSK_CFG_0_PKT_MODE", 65, 0, 1, False, False, 0),
    ("FSK_PREAMBLE_SIZE_MSB", 66, 0, 8, False, False, 0),
    ("FSK_PREAMBLE_SIZE_LSB", 67, 0, 8, False, False, 20),
    ("FSK_BIT_RATE_MSB", 68, 0, 8, False, False, 26),
    ("FSK_BIT_RATE_LSB", 69, 0, 8, False, False, 11),
    ("FSK_MOD_REF_PATTERN_SIZE", 70, 5, 3, False, False, 3),
    ("FSK_MOD_PREAMBLE_SEQ", 70, 4, 1, False, False, 0),
    ("FSK_MOD_REF_PATTERN_EN", 70, 3, 1, False, False, 1),
    ("FSK_MOD_GAUSSIAN_SELECT_BT", 70, 1, 2, False, False, 0),
    ("FSK_MOD_GAUSSIAN_EN", 70, 0, 1, False, False, 0),
    *((f"FSK_REF_PATTERN_BYTE{i}", 78 - i, 0, 8, False, False, d)
      for i, d in enumerate((100, 101, 83, 86, 37, 82, 35, 151))),
    ("TXRX_CFG0_0_MODEM_BW", 96, 4, 4, False, False, 5),
    ("TXRX_CFG0_0_MODEM_SF", 96, 0, 4, False, False, 7),
    ("TXRX_CFG0_1_PPM_OFFSET_HDR_CTRL", 97, 6, 2, False, False, 2),
    ("TXRX_CFG0_1_PPM_OFFSET", 97, 4, 2, False, False, 0),
    ("TXRX_CFG0_1_CODING_RATE", 97, 0, 3, False, False, 2),
    ("TXRX_CFG0_2_FINE_SYNCH_EN", 98, 7, 1, False, False, 0),
    ("TXRX_CFG0_2_MODEM_EN", 98, 6, 1, False, False, 0),
    ("TXRX_CFG0_2_CADRXTX", 98, 4, 2, False, False, 2),
    ("TXRX_CFG0_2_IMPLICIT_HEADER", 98, 1, 1, False, False, 0),
    ("TXRX_CFG0_2_CRC_EN", 98, 0, 1, False, False, 1),
    ("TXRX_CFG0_3_PAYLOAD_LENGTH", 99, 0, 8, False, False, 12),
    ("TXRX_CFG1_1_MODEM_START", 101, 7, 1, False, False, 0),
    ("TXRX_CFG1_2_PREAMBLE_SYMB_NB", 102, 0, 8, False, False, 8),
    ("TXRX_CFG1_3_PREAMBLE_SYMB_NB", 103, 0, 8, False, False, 0),
    ("TX_CFG0_0_CHIRP_LOWPASS", 105, 4, 3, False, False, 0),
    ("TX_CFG0_0_CHIRP_INVERT", 105, 1, 1, False, False, 1),
    ("TX_CFG0_0_CONTINUOUS", 105, 0, 1, False, False, 0),
    ("FRAME_SYNCH_0_PEAK1_POS", 109, 0, 5, True, False, 2),
    ("FRAME_SYNCH_1_PEAK2_POS", 110, 0, 5, True, False, 4),
)


def _build() -> Mapping[str, Field]:
    fields: dict[str, Field] = {}
    rows: list[_Row] = [*_COMMON, *_RX_TOP, *_ARB, *_TIMESTAMP_OTP, *MODEM_ROWS]
    for chain, letter in enumerate("AB"):
        rows += [(f"TX_{letter}_{name}", TX_BASE[chain] + off, bit, width, signed, ro, default)
                 for name, off, bit, width, signed, ro, default in _TX_CHAIN]
    for name, address, offset, width, signed, read_only, default in rows:
        if name in fields:
            raise AssertionError(f"duplicate register field {name}")
        fields[name] = Field(name, address, offset, width, signed, read_only, default)
    return MappingProxyType(fields)


FIELDS: Mapping[str, Field] = _build()


def tx_field(rf_chain: int, suffix: str) -> str:
    """The name of a TX chain field, e.g. ``tx_field(1, "AGC_TX_PWR") == "TX_B_AGC_TX_PWR"``."""
    if rf_chain not in (0, 1):
        raise ValueError(f"rf_chain must be 0 or 1, not {rf_chain}")
    return f"TX_{'AB'[rf_chain]}_{suffix}"


def reset_bytes() -> dict[int, int]:
    """Each register byte's reset value, composed from its fields' defaults."""
    image: dict[int, int] = {}
    for f in FIELDS.values():
        image[f.address] = f.insert(image.get(f.address, 0), f.default)
    return image


class Registers:
    """Named field access over :class:`Sx1302Spi`, read-modify-write for partial bytes."""

    def __init__(self, spi: Sx1302Spi) -> None:
        self.spi = spi

    @staticmethod
    def field(name: str) -> Field:
        try:
            return FIELDS[name]
        except KeyError:
            raise RegisterError(f"unknown register field {name}") from None

    def read(self, name: str) -> int:
        f = self.field(name)
        return f.extract(self.spi.read(f.address))

    def write(self, name: str, value: int) -> None:
        """Write a field; a whole-byte field is written directly, others by read-modify-write."""
        f = self.field(name)
        if f.read_only:
            raise RegisterError(f"{name} is read-only")
        if f.width == 8 and f.offset == 0:
            self.spi.write(f.address, f.insert(0, value))
            return
        current = self.spi.read(f.address)
        self.spi.write(f.address, f.insert(current, value))

    def write_many(self, values: Mapping[str, int]) -> None:
        for name, value in values.items():
            self.write(name, value)
