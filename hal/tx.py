"""Load one packet into an SX1302 TX chain and arm its trigger.

The sequence follows the chip's TX block: modulation and power, RF frequency
(f·2^18/32 MHz), modem parameters, start delay, payload written into the chain's
buffer between WRITE_BUFFER=1 and 0, then a trigger (immediate, on a counter
value, or on the next GPS PPS), each armed by writing 0 then 1.
"""

from __future__ import annotations

from functools import partial

from hal.errors import HalError
from hal.modem_config import FSK_SYNC_WORD, FSK_SYNC_WORD_SIZE
from hal.registers import TX_PAYLOAD_ADDR, Registers, tx_field
from hal.timing import BW_CODES, CR_CODES, low_datarate_optimize, tx_start_delay_ticks
from hal.types import Modulation, TxPacket, TxState, TxTiming
from hardware.board import BoardProfile

TX_FREQ_SHIFT = 18
XTAL_HZ = 32_000_000
LORA_MIN_PREAMBLE = 6
FSK_MIN_PREAMBLE = 3
FSK_TX_BW_BYTE = 0x80
"""AGC_TX_BW for FSK: bit 7 set, bandwidth code 0 as the forwarders leave it
(``sx1302_send``, loragw_sx1302.c: ``(0x01 << 7) | pkt_data->bandwidth``)."""
SX1250_FREQ_SHIFT = 25
"""The SX1250's frequency step is 32 MHz / 2^25 (``SX1250_FREQ_TO_REG``, sx1250_defs.h)."""
TX_STATUS_FREE = 0x80
TX_STATUS_EMITTING = frozenset({0x30, 0x50, 0x60, 0x70})
TX_STATUS_SCHEDULED = frozenset({0x91, 0x92})


class TxParamError(HalError):
    """A TX request the chip cannot carry out (bad SF, bandwidth, length, chain)."""


def tx_freq_to_reg(freq_hz: int) -> int:
    return freq_hz * (1 << TX_FREQ_SHIFT) // XTAL_HZ


def sx1250_freq_to_reg(freq_hz: int) -> int:
    return freq_hz * (1 << SX1250_FREQ_SHIFT) // XTAL_HZ


def tx_reg_to_freq(reg: int) -> float:
    return reg * XTAL_HZ / (1 << TX_FREQ_SHIFT)


def decode_tx_status(value: int) -> TxState:
    if value == TX_STATUS_FREE:
        return TxState.FREE
    if value in TX_STATUS_EMITTING:
        return TxState.EMITTING
    if value in TX_STATUS_SCHEDULED:
        return TxState.SCHEDULED
    return TxState.UNKNOWN


def validate(packet: TxPacket) -> None:
    if packet.rf_chain not in (0, 1):
        raise TxParamError(f"rf_chain {packet.rf_chain} (must be 0 or 1)")
    if not 1 <= len(packet.payload) <= 255:
        raise TxParamError(f"payload of {len(packet.payload)} bytes (1-255)")
    if packet.modulation is Modulation.LORA:
        if not 5 <= packet.spreading_factor <= 12:
            raise TxParamError(f"SF {packet.spreading_factor}")
        if packet.bandwidth_hz not in BW_CODES:
            raise TxParamError(f"bandwidth {packet.bandwidth_hz}")
        if packet.code_rate not in CR_CODES:
            raise TxParamError(f"coding rate {packet.code_rate!r}")
    elif packet.datarate_bps <= 0 or packet.fdev_hz <= 0:
        raise TxParamError("FSK needs a bit rate and a frequency deviation")


def _program_lora(regs: Registers, p: TxPacket, chain: int) -> int:
    """LoRa modem registers; returns the chirp low-pass setting (it shapes the start delay)."""
    f = partial(tx_field, chain)
    regs.write(f("FREQ_DEV_H"), (tx_freq_to_reg(p.bandwidth_hz // 2) >> 8) & 0x0F)
    regs.write(f("FREQ_DEV_L"), tx_freq_to_reg(p.bandwidth_hz // 2) & 0xFF)
    regs.write(f("TXRX_CFG0_0_MODEM_BW"), BW_CODES[p.bandwidth_hz])
    preamble = max(p.preamble or 8, LORA_MIN_PREAMBLE)
    regs.write(f("TXRX_CFG1_3_PREAMBLE_SYMB_NB"), (preamble >> 8) & 0xFF)
    regs.write(f("TXRX_CFG1_2_PREAMBLE_SYMB_NB"), preamble & 0xFF)
    regs.write(f("TXRX_CFG0_0_MODEM_SF"), p.spreading_factor)
    chirp_lowpass = 6 if p.spreading_factor < 10 else 7
    regs.write(f("TX_CFG0_0_CHIRP_LOWPASS"), chirp_lowpass)
    regs.write(f("TXRX_CFG0_1_CODING_RATE"), CR_CODES[p.code_rate])
    regs.write(f("TXRX_CFG0_2_MODEM_EN"), 1)
    regs.write(f("TXRX_CFG0_2_CADRXTX"), 2)
    regs.write(f("TXRX_CFG1_1_MODEM_START"), 1)
    regs.write(f("TX_CFG0_0_CONTINUOUS"), 0)
    regs.write(f("TX_CFG0_0_CHIRP_INVERT"), int(p.invert_polarity))
    regs.write(f("TXRX_CFG0_2_IMPLICIT_HEADER"), int(p.no_header))
    regs.write(f("TXRX_CFG0_2_CRC_EN"), 0 if p.no_crc else 1)
    public = p.spreading_factor >= 7  # LoRaWAN public sync word; SF5/6 use the private one
    regs.write(f("FRAME_SYNCH_0_PEAK1_POS"), 6 if public else 2)
    regs.write(f("FRAME_SYNCH_1_PEAK2_POS"), 8 if public else 4)
    regs.write(f("TXRX_CFG0_2_FINE_SYNCH_EN"), int(p.spreading_factor <= 6))
    regs.write(f("TXRX_CFG0_3_PAYLOAD_LENGTH"), len(p.payload))
    regs.write(f("TXRX_CFG0_1_PPM_OFFSET_HDR_CTRL"), 0)
    regs.write(f("TXRX_CFG0_1_PPM_OFFSET"),
               int(low_datarate_optimize(p.spreading_factor, p.bandwidth_hz)))
    return chirp_lowpass


def _program_fsk(regs: Registers, p: TxPacket, chain: int) -> None:
    f = partial(tx_field, chain)
    fdev = tx_freq_to_reg(p.fdev_hz)
    regs.write(f("FREQ_DEV_H"), (fdev >> 8) & 0x0F)
    regs.write(f("FREQ_DEV_L"), fdev & 0xFF)
    # The AGC firmware configures the SX1250's own deviation from mailbox bytes 2..0
    # (0x578A..0x578C), written on every FSK send: ``sx1302_send``, loragw_sx1302.c,
    # "Needed by AGC to configure the sx1250". Without it the AGC keeps stale bytes.
    agc_fdev = sx1250_freq_to_reg(p.fdev_hz)
    for n in (2, 1, 0):
        regs.write(f"AGC_MCU_MAILBOX_WR_{n}", (agc_fdev >> (8 * n)) & 0xFF)
    regs.write(f("FSK_CFG_0_PKT_MODE"), 1)  # variable length
    regs.write(f("FSK_CFG_0_CRC_EN"), 0 if p.no_crc else 1)
    regs.write(f("FSK_CFG_0_CRC_IBM"), 0)  # CRC-16/CCITT, as LoRaWAN devices check
    regs.write(f("FSK_CFG_0_DCFREE_ENC"), 2)  # whitening
    regs.write(f("FSK_MOD_GAUSSIAN_EN"), 1)
    regs.write(f("FSK_MOD_GAUSSIAN_SELECT_BT"), 2)  # the reference driver's GFSK filter
    regs.write(f("FSK_MOD_REF_PATTERN_EN"), 1)
    regs.write(f("FSK_MOD_REF_PATTERN_SIZE"), FSK_SYNC_WORD_SIZE - 1)
    pattern = FSK_SYNC_WORD << (8 * (8 - FSK_SYNC_WORD_SIZE))
    for i in range(8):
        regs.write(f(f"FSK_REF_PATTERN_BYTE{i}"), (pattern >> (8 * i)) & 0xFF)
    regs.write(f("FSK_MOD_PREAMBLE_SEQ"), 0)
    bit_rate = XTAL_HZ // p.datarate_bps
    regs.spi.burst_write(regs.field(f("FSK_BIT_RATE_MSB")).address, bit_rate.to_bytes(2, "big"))
    preamble = max(p.preamble or 5, FSK_MIN_PREAMBLE)
    regs.spi.burst_write(regs.field(f("FSK_PREAMBLE_SIZE_MSB")).address,
                         preamble.to_bytes(2, "big"))
    regs.write(f("FSK_PKT_LEN"), len(p.payload))


def _trigger(regs: Registers, p: TxPacket, chain: int, start_delay: int) -> None:
    f = partial(tx_field, chain)
    if p.timing is TxTiming.IMMEDIATE:
        name = "TX_TRIG_IMMEDIATE"
    elif p.timing is TxTiming.TIMESTAMPED:
        name = "TX_TRIG_DELAYED"
        ticks = (p.count_us * 32 - start_delay) % (1 << 32)
        for i, byte in enumerate(ticks.to_bytes(4, "little")):
            regs.write(f(f"TIMER_TRIG_BYTE{i}"), byte)
    else:
        name = "TX_TRIG_GPS"
    regs.write(f(name), 0)  # a rising edge arms the trigger
    regs.write(f(name), 1)


def load_and_trigger(regs: Registers, packet: TxPacket, board: BoardProfile) -> None:
    """Program the chain named by ``packet.rf_chain`` and arm its trigger."""
    validate(packet)
    chain = packet.rf_chain
    f = partial(tx_field, chain)
    lora = packet.modulation is Modulation.LORA
    regs.write(f("GEN_CFG_0_MODULATION_TYPE"), 0 if lora else 1)
    regs.write(f("TX_RFFE_IF_CTRL_TX_IF_SRC"), 1 if lora else 2)
    gain = board.tx_gain_for(packet.power_dbm)
    regs.write(f("AGC_TX_PWR"), (int(gain.pa_gain > 0) << 6) | gain.pwr_idx)
    freq = tx_freq_to_reg(packet.frequency_hz)
    regs.write(f("FREQ_RF_H"), (freq >> 16) & 0xFF)
    regs.write(f("FREQ_RF_M"), (freq >> 8) & 0xFF)
    regs.write(f("FREQ_RF_L"), freq & 0xFF)
    regs.write(f("AGC_TX_BW"), BW_CODES[packet.bandwidth_hz] if lora else FSK_TX_BW_BYTE)
    start_delay = 0
    if lora:
        chirp_lowpass = _program_lora(regs, packet, chain)
        start_delay = tx_start_delay_ticks(packet.bandwidth_hz, chirp_lowpass)
        regs.spi.burst_write(regs.field(f("TX_START_DELAY_MSB")).address,
                             start_delay.to_bytes(2, "big"))
    else:
        _program_fsk(regs, packet, chain)
    regs.write(f("TX_CTRL_WRITE_BUFFER"), 1)
    body = packet.payload if lora else bytes((len(packet.payload),)) + packet.payload
    regs.spi.burst_write(TX_PAYLOAD_ADDR[chain], body)
    regs.write(f("TX_CTRL_WRITE_BUFFER"), 0)
    _trigger(regs, packet, chain, start_delay)
