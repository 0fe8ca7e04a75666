"""LoRa timing: time on air, the RX decoder-delay correction, the TX start delay.

All durations are in microseconds. Register codes for bandwidth and coding rate
live here too because timing and register programming both need them.
"""

from __future__ import annotations

import math

BW_CODES = {125_000: 0x04, 250_000: 0x05, 500_000: 0x06}
BW_FROM_CODE = {code: bw for bw, code in BW_CODES.items()}
CR_CODES = {"4/5": 1, "4/6": 2, "4/7": 3, "4/8": 4}
CR_FROM_CODE = {code: cr for cr, code in CR_CODES.items()}

TX_START_DELAY_DEFAULT_US = 1500
SX1250_TX_BW_DELAY_TICKS = {125_000: 19, 250_000: 24, 500_000: 21}


def _bw_factor(bw_hz: int) -> int:
    if bw_hz not in BW_CODES:
        raise ValueError(f"unsupported LoRa bandwidth {bw_hz}")
    return bw_hz // 125_000


def low_datarate_optimize(sf: int, bw_hz: int) -> bool:
    """Symbols of 16 ms or more need the low-data-rate mode (SF11/12 at 125 kHz, SF12 at 250).

    This is the rule the reference driver uses when it programs the modem (TX
    PPM_OFFSET, RX decoder delay). Its ``lgw_time_on_air`` instead assumes the mode
    for SF11/12 at every bandwidth, overstating e.g. SF12/500 kHz frames; time on
    air here follows what the chip actually transmits.
    """
    return (bw_hz == 125_000 and sf >= 11) or (bw_hz == 250_000 and sf == 12)


def payload_symbols(sf: int, bw_hz: int, cr: int, size: int, *, crc: bool = True,
                    implicit_header: bool = False) -> int:
    """Symbols after the header block, per the LoRa modem's framing (``cr`` 1..4)."""
    de = 1 if low_datarate_optimize(sf, bw_hz) else 0
    header = 0 if implicit_header else 1
    bits = 8 * size + (16 if crc else 0) - 4 * sf + (8 if sf >= 7 else 0) + 20 * header
    return math.ceil(max(bits, 0) / (4 * (sf - 2 * de))) * (cr + 4)


def time_on_air_us(sf: int, bw_hz: int, cr: int, size: int, *, preamble: int = 8,
                   crc: bool = True, implicit_header: bool = False) -> int:
    """Duration of a LoRa frame from the first preamble symbol to the last payload symbol."""
    symbol_us = (1 << sf) * 8 / _bw_factor(bw_hz)
    n = preamble + (4.25 if sf >= 7 else 6.25) + 8 + payload_symbols(
        sf, bw_hz, cr, size, crc=crc, implicit_header=implicit_header)
    return int(n * symbol_us)


def decoder_delay_us(sf: int, bw_hz: int, cr: int, size: int, crc: bool) -> int:
    """How long after the end of a frame the SX1302 stamps it (its decoding pipeline).

    The host subtracts this from the packet timestamp so ``count_us`` marks the end
    of the frame on air, as on the SX1301. The model counts cycles of the modem's
    4 MHz (at 125 kHz) clock through filtering, FFT, demapping and decoding; the
    arithmetic is in picoseconds and rounded to the nearest microsecond.
    """
    bw_pow = _bw_factor(bw_hz)
    ppm = 1 if low_datarate_optimize(sf, bw_hz) else 0
    clk = 250_000 // bw_pow  # modem clock period, ps
    nibbles = (size + 2 * int(crc)) * 2 + 5
    hdr_nibbles = sf if sf in (5, 6) else sf - 2
    block = sf - 2 * ppm
    last_block = nibbles - hdr_nibbles - block * ((nibbles - hdr_nibbles) // block)
    if last_block == 0:
        last_block = block
    dft_peak = True
    in_header = (2 * (size + 2 * int(crc)) - (sf - 7) <= 0) or (size == 0 and not crc)
    if in_header:  # the whole payload rides in the 8 header symbols
        dft_peak = False
        cr = 4
        last_block = sf - 2 if sf > 6 else sf
        demap = clk + (1 << sf) * clk * 3 // 4 + 3 * clk + (sf - 2) * clk
    else:
        demap = clk + (1 << sf) * clk + 3 * clk + (sf - 2 * ppm) * clk
    filtering = 16_000_000 // bw_pow + 2_031_250
    iterations = (sf + 1) // 2
    fft_state3 = clk * (((1 << sf) - 6) + 2 * ((1 << sf) * (iterations - 1) + 6)) + 4 * clk
    if dft_peak:
        fft = (5 - 2 * ppm) * ((1 << sf) * clk + 7 * clk) + 2 * clk
    else:
        fft = (1 << sf) * 2 * clk + 3 * clk
    decode = 5 * clk + (9 * clk + clk * cr) * last_block + 3 * clk
    return (filtering + fft_state3 + fft + demap + decode + 500_000) // 1_000_000


def fsk_decoder_delay_us(datarate_bps: int) -> int:
    """How early the FSK demodulator stamps a frame, in µs (empirical in the reference driver).

    The host *adds* it to the stamp (``sx1302_parse`` in loragw_sx1302.c), where the
    LoRa decoder delay is subtracted.
    """
    return 680_000 // datarate_bps - 20


def tx_start_delay_ticks(bw_hz: int, chirp_lowpass: int) -> int:
    """32 MHz ticks between the TX trigger and the first symbol on air (SX1250, LoRa).

    The chip starts the TX chain this long before the requested instant, so the
    host arms the timer at ``count_us * 32 - delay``.
    """
    bw_delay = SX1250_TX_BW_DELAY_TICKS[bw_hz]
    filter_delay = ((1 << chirp_lowpass) - 1) * 1_000_000 // bw_hz
    modem_delay = 8 * (32_000_000 // (32 * bw_hz))
    return TX_START_DELAY_DEFAULT_US * 32 - (bw_delay + filter_delay + modem_delay)


def precision_timestamp_correction_us(sf: int, bw_hz: int, cr: int, size: int,
                                      crc: bool) -> int:
    """Fine-timestamp mode: the chip stamps the end of the header; this moves the stamp to
    the end of the packet, less the filter delay (``precision_timestamp_correction``,
    loragw_sx1302_timestamp.c). Added to the stamp, unlike :func:`decoder_delay_us`.

    The payload symbol count follows ``lora_packet_time_on_air`` (loragw_aux.c), which
    assumes the low-data-rate mode for SF11/12 at every bandwidth.
    """
    bw_pow = _bw_factor(bw_hz)
    t_symbol_us = (1 << sf) * 8 // bw_pow
    de = 1 if sf >= 11 else 0
    bits = 8 * size + (16 if crc else 0) - 4 * sf + (8 if sf >= 7 else 0) + 20
    symbols = math.ceil(max(bits, 0) / (4 * (sf - 2 * de))) * (cr + 4)
    filtering_ps = 16_000_000 // bw_pow + 2_031_250
    return int(symbols * t_symbol_us - (filtering_ps + 500_000) / 1e6)  # C truncation
