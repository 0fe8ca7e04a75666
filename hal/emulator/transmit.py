"""The emulated TX chains: decode what the driver loaded, schedule it, report the FSM status."""

from __future__ import annotations

from dataclasses import dataclass, replace

from hal.registers import FIELDS, TX_BASE, TX_PAYLOAD_ADDR, tx_field
from hal.timing import BW_FROM_CODE, CR_FROM_CODE, time_on_air_us
from hal.tx import TX_STATUS_FREE, tx_reg_to_freq
from hal.types import Modulation, TxTiming
from hardware.board import BoardProfile

TICKS_PER_US = 32
COUNTER_TICKS = 1 << 32
STATUS_EMITTING = 0x70
STATUS_SCHEDULED_TIMER = 0x91
STATUS_SCHEDULED_PPS = 0x92
AGC_MAILBOX_FDEV = 0x578A
"""AGC mailbox bytes 2..0 (0x578A..0x578C): the SX1250 deviation the AGC firmware applies."""
SX1250_STEP_HZ = 32_000_000 / (1 << 25)
TRIGGER_BITS = {0: TxTiming.IMMEDIATE, 1: TxTiming.TIMESTAMPED, 2: TxTiming.ON_GPS_PPS}


@dataclass(frozen=True, slots=True)
class TxLogEntry:
    """One frame the emulated chip put on the air."""

    rf_chain: int
    payload: bytes
    frequency_hz: int
    power_reg: int
    power_dbm: int | None
    """From the board's TX power table; None if the register matches no entry."""
    modulation: Modulation
    spreading_factor: int
    bandwidth_hz: int
    code_rate: str
    preamble: int
    crc: bool
    invert_polarity: bool
    implicit_header: bool
    timing: TxTiming
    start_count_us: int
    """32-bit µs counter when the first preamble symbol leaves the antenna."""
    agc_bw_byte: int = 0
    """AGC_TX_BW as loaded: the AGC reads modulation (bit 7 = FSK) and bandwidth from it."""
    fdev_hz: int = 0
    """FSK: the deviation the AGC configures the SX1250 with, from its mailbox bytes (what
    the device actually hears), not the TX chain's own FREQ_DEV register."""
    datarate_bps: int = 0


def _field(mem: bytearray, chain: int, suffix: str) -> int:
    f = FIELDS[tx_field(chain, suffix)]
    return f.extract(mem[f.address])


def _fsk_bit_rate(mem: bytearray, base: int) -> int:
    divider = (mem[base + 68] << 8) | mem[base + 69]
    return 32_000_000 // divider if divider else 0


def _power_dbm(board: BoardProfile, reg: int) -> int | None:
    pa_en, idx = reg >> 6 & 1, reg & 0x3F
    for entry in board.tx_gain_lut:
        if int(entry.pa_gain > 0) == pa_en and entry.pwr_idx == idx:
            return entry.rf_power_dbm
    return None


class TxChainEmulator:
    """One TX chain: armed by a rising trigger bit, busy for the frame's time on air."""

    def __init__(self, chain: int, board: BoardProfile) -> None:
        self.chain = chain
        self.board = board
        self.pending: TxTiming | None = None
        self.start_tick = 0
        self.end_tick = 0
        self.stuck = False
        self._airtime_ticks = 0
        self._loaded: TxLogEntry | None = None

    def _decode(self, mem: bytearray, timing: TxTiming) -> tuple[TxLogEntry, int]:
        """The loaded frame and its time on air in µs."""
        lora = _field(mem, self.chain, "GEN_CFG_0_MODULATION_TYPE") == 0
        base, pay = TX_BASE[self.chain], TX_PAYLOAD_ADDR[self.chain]
        freq = int.from_bytes(mem[base + 37:base + 40], "big")
        sf = _field(mem, self.chain, "TXRX_CFG0_0_MODEM_SF")
        bw = BW_FROM_CODE.get(_field(mem, self.chain, "TXRX_CFG0_0_MODEM_BW"), 0)
        cr_code = _field(mem, self.chain, "TXRX_CFG0_1_CODING_RATE")
        if lora:
            payload = bytes(mem[pay:pay + _field(mem, self.chain, "TXRX_CFG0_3_PAYLOAD_LENGTH")])
        else:
            payload = bytes(mem[pay + 1:pay + 1 + mem[pay]])
        preamble = (mem[base + 103] << 8) | mem[base + 102]
        crc = bool(_field(mem, self.chain, "TXRX_CFG0_2_CRC_EN"))
        implicit = lora and bool(_field(mem, self.chain, "TXRX_CFG0_2_IMPLICIT_HEADER"))
        entry = TxLogEntry(
            rf_chain=self.chain, payload=payload, frequency_hz=round(tx_reg_to_freq(freq)),
            power_reg=mem[base + 13], power_dbm=_power_dbm(self.board, mem[base + 13]),
            modulation=Modulation.LORA if lora else Modulation.FSK,
            spreading_factor=sf if lora else 0, bandwidth_hz=bw if lora else 0,
            code_rate=CR_FROM_CODE.get(cr_code, "") if lora else "", preamble=preamble,
            crc=crc, invert_polarity=bool(_field(mem, self.chain, "TX_CFG0_0_CHIRP_INVERT")),
            implicit_header=implicit, timing=timing, start_count_us=0,
            agc_bw_byte=mem[base + 12],
            fdev_hz=0 if lora else round(
                int.from_bytes(mem[AGC_MAILBOX_FDEV:AGC_MAILBOX_FDEV + 3], "big") * SX1250_STEP_HZ),
            datarate_bps=0 if lora else _fsk_bit_rate(mem, base),
        )
        airtime = (time_on_air_us(sf, bw, cr_code, len(payload), preamble=preamble, crc=crc,
                                  implicit_header=implicit)
                   if lora and bw and 5 <= sf <= 12 and cr_code in CR_FROM_CODE else 1000)
        return entry, airtime

    def arm(self, mem: bytearray, timing: TxTiming, now: int) -> TxLogEntry | None:
        """A rising trigger bit: returns the log entry now, or None until a PPS fires it."""
        entry, airtime = self._decode(mem, timing)
        base = TX_BASE[self.chain]
        if timing is TxTiming.ON_GPS_PPS:
            self.pending, self._loaded = timing, entry
            self._airtime_ticks = airtime * TICKS_PER_US
            return None
        start = now
        if timing is TxTiming.TIMESTAMPED:
            target = int.from_bytes(mem[base + 1:base + 5], "big")
            start = now + (target - now) % COUNTER_TICKS
            start += (mem[base + 5] << 8) | mem[base + 6]  # the start delay the host subtracted
        self.pending = timing
        self.start_tick, self.end_tick = start, start + airtime * TICKS_PER_US
        return _with_start(entry, start)

    def pps(self, now: int) -> TxLogEntry | None:
        if self.pending is not TxTiming.ON_GPS_PPS or self._loaded is None:
            return None
        self.start_tick, self.end_tick = now, now + self._airtime_ticks
        self.pending = TxTiming.IMMEDIATE
        return _with_start(self._loaded, now)

    def cancel(self, now: int) -> None:
        """A trigger bit written back to 0 aborts a frame not yet on air."""
        if self.pending is TxTiming.ON_GPS_PPS or (self.pending and now < self.start_tick):
            self.pending = None

    def status(self, now: int) -> int:
        if self.stuck and self.pending is not None:
            return STATUS_EMITTING
        if self.pending is TxTiming.ON_GPS_PPS:
            return STATUS_SCHEDULED_PPS
        if self.pending is None or now >= self.end_tick:
            return TX_STATUS_FREE
        return STATUS_SCHEDULED_TIMER if now < self.start_tick else STATUS_EMITTING


def _with_start(entry: TxLogEntry, start_tick: int) -> TxLogEntry:
    return replace(entry, start_count_us=(start_tick // TICKS_PER_US) % (1 << 32))
