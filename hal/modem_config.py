"""Receive tuning of the SX1302: what makes the demodulators hear weak packets.

The chip comes out of reset able to move bytes but tuned for nothing in particular;
the reference driver (sx1302_hal ``lgw_start``) then writes a few hundred fields of
front-end filtering, channel gain control, preamble detection and demodulator
tracking before it enables the modems. Without them a board "works" on the bench
next to a strong node and misses most frames from a water meter in a basement. Each
step below is one group of those writes, in the reference order, with the values as
named tables so a reviewer can hold them against the source.

Values that depend on the plan are computed from it: the correlator SF mask and
channel enables, the service modem's SF and bandwidth (and the tracking settings the
slower ones need), the FSK bit rate, and the frequency-to-time drift compensation,
which depends on radio A's centre frequency.
"""

from __future__ import annotations

from collections.abc import Mapping

from hal.plan import FSK_CHAIN, SERVICE_CHAIN, IfChain, RadioLayout, if_to_reg
from hal.registers import Registers
from hal.timing import BW_CODES

MULTI_SF_CHANNELS = 8
SPREADING_FACTORS = range(5, 13)

GPIO_SELECT = (0x00, 0x00, 0x09, 0x00, 0x09, 0x00, 0x00, 0x01)
"""Source of GPIO 0..7: host register, except GPIO 2 = "TX on" and GPIO 4 = "RX packet"
status outputs (board LEDs), and GPIO 7 = AGC input (the LBT radio's busy line)."""
GPIO_DIRECTION = 0x7F
"""GPIO 0-6 outputs, GPIO 7 an input."""

PA_LNA_LUT_HALF_DUPLEX = {"AGC_MCU_LUT_TABLE_A_PA_LUT": 0x04,
                          "AGC_MCU_LUT_TABLE_A_LNA_LUT": 0x02,
                          "AGC_MCU_LUT_TABLE_B_PA_LUT": 0x04,
                          "AGC_MCU_LUT_TABLE_B_LNA_LUT": 0x02}
"""Which radio-control line goes high for PA and LNA: the PA only while transmitting,
the LNA only while receiving and not transmitting (every board profile here is
half duplex; full-duplex reference designs use other values on radio A)."""

RADIO_FRONT_END = {
    **{f"RADIO_FE_RSSI_BB_FILTER_ALPHA_RADIO_{r}_RSSI_BB_FILTER_ALPHA": 0x03 for r in "AB"},
    **{f"RADIO_FE_RSSI_DEC_FILTER_ALPHA_RADIO_{r}_RSSI_DEC_FILTER_ALPHA": 0x07 for r in "AB"},
    **{f"RADIO_FE_RSSI_DB_DEF_RADIO_{r}_RSSI_DB_DEFAULT_VALUE": 23 for r in "AB"},
    **{f"RADIO_FE_RSSI_DEC_DEF_RADIO_{r}_RSSI_DEC_DEFAULT_VALUE": 66 for r in "AB"},
    **{f"RADIO_FE_CTRL0_RADIO_{r}_DC_NOTCH_EN": 1 for r in "AB"},
    **{f"RADIO_FE_CTRL0_RADIO_{r}_HOST_FILTER_GAIN": 0x0B for r in "AB"},
}
"""Per radio: RSSI smoothing and start values, the DC notch (removes the radio's own
carrier leak at 0 Hz IF) and the host filter gain."""

CHANNELIZER_GAIN = {
    "RX_TOP_RSSI_CONTROL_RSSI_FILTER_ALPHA": 0x05,
    "RX_TOP_RSSI_DEF_VALUE_CHAN_RSSI_DEF_VALUE": 85,
    "RX_TOP_CHANN_DAGC_CFG5_CHAN_DAGC_MODE": 0x01,
    "RX_TOP_CHANN_DAGC_CFG1_CHAN_DAGC_THRESHOLD_HIGH": 255,
    "RX_TOP_CHANN_DAGC_CFG2_CHAN_DAGC_THRESHOLD_LOW": 0,
    "RX_TOP_CHANN_DAGC_CFG3_CHAN_DAGC_MAX_ATTEN": 15,
    "RX_TOP_CHANN_DAGC_CFG3_CHAN_DAGC_MIN_ATTEN": 0,
}
"""Channel RSSI filter, and the per-channel digital AGC in automatic mode over its
full attenuation range (a fixed gain is only for lab measurements)."""

CORRELATOR_PER_SF = {"CFG2_ACC_PNR": 52, "CFG4_MSP_PNR": 24, "CFG6_MSP_PEAK_NB": 7,
                     "CFG7_MSP2_PEAK_NB": 5}
"""Preamble detection thresholds, the same for SF5..SF12: lower peak-to-noise ratios
than the reset values (55-60 and 32), so preambles near the noise floor are caught."""

FREQ_TRACK_AUTO = 0x03
FREQ_TRACK_OFF = 0x00
FINE_TIMING_LINEAR = 0x02
DFT_PEAK_AUTO = 0x03

MULTI_SF_MODEM = {
    "RX_TOP_DC_NOTCH_CFG1_ENABLE": 0x00,
    "RX_TOP_RX_DFE_AGC1_FORCE_DEFAULT_FIR": 0x01,
    "RX_TOP_DAGC_CFG_GAIN_DROP_COMP": 0x01,
    "RX_TOP_DAGC_CFG_TARGET_LVL": 0x01,
    "OTP_MODEM_EN_0_MODEM_EN": 0xFF,
    "OTP_MODEM_EN_1_MODEM_EN": 0xFF,
    "RX_TOP_MODEM_SYNC_DELTA_MSB_MODEM_SYNC_DELTA": 0,
    "RX_TOP_MODEM_SYNC_DELTA_LSB_MODEM_SYNC_DELTA": 126,
    **{f"ARB_MCU_CHANNEL_SYNC_OFFSET_{c - c % 2}{c - c % 2 + 1}_CHANNEL_{c}_OFFSET": 1 + 4 * (c % 4)
       for c in range(MULTI_SF_CHANNELS)},
    **{f"RX_TOP_MODEM_PPM_OFFSET{1 if sf <= 8 else 2}_PPM_OFFSET_SF{sf}": int(sf >= 11)
       for sf in SPREADING_FACTORS},
    "RX_TOP_FINE_TIMING_A_1_GAIN_P_AUTO": 3,
    "RX_TOP_FINE_TIMING_A_1_GAIN_P_PAYLOAD": 3,
    "RX_TOP_FINE_TIMING_A_5_GAIN_I_EN_SF11": 1,
    "RX_TOP_FINE_TIMING_A_5_GAIN_I_EN_SF12": 1,
    "RX_TOP_FREQ_TRACK4_FREQ_SYNCH_THR": 15,
    **{f"RX_TOP_FREQ_TRACK_A_{0 if sf <= 8 else 1}_FREQ_TRACK_EN_SF{sf}": FREQ_TRACK_AUTO
       for sf in SPREADING_FACTORS},
    **{f"RX_TOP_FREQ_TRACK_B_{0 if sf <= 8 else 1}_FREQ_TRACK_EN_SF{sf}": FREQ_TRACK_OFF
       for sf in SPREADING_FACTORS},
    "RX_TOP_FINE_TIMING_B_5_GAIN_I_EN_SF11": 0,
    "RX_TOP_FINE_TIMING_B_5_GAIN_I_EN_SF12": 0,
    "RX_TOP_FINE_TIMING_B_0_ROUNDING": 1,
    "RX_TOP_FINE_TIMING_B_0_MODE": FINE_TIMING_LINEAR,
    "RX_TOP_FINE_TIMING_B_1_GAIN_P_AUTO": 0,
    "RX_TOP_FINE_TIMING_B_1_GAIN_P_PREAMB": 6,
    "RX_TOP_FINE_TIMING_B_1_GAIN_P_PAYLOAD": 2,
    "RX_TOP_FINE_TIMING_B_2_GAIN_I_AUTO": 0,
    "RX_TOP_FINE_TIMING_B_2_GAIN_I_PREAMB": 1,
    "RX_TOP_FINE_TIMING_B_2_GAIN_I_PAYLOAD": 0,
    "RX_TOP_TXRX_CFG7_PREAMBLE_SYMB_NB": 0,
    "RX_TOP_TXRX_CFG6_PREAMBLE_SYMB_NB": 10,
}
"""The multi-SF demodulators: DAGC, the modem enables in OTP shadow, sync timing, the
ARB's per-channel sync offsets (spread so eight channels do not ask at once), the
low-data-rate ppm offset for SF11/12, timing and frequency tracking loops, and a
10-symbol minimum preamble. Order as the reference writes them."""

SERVICE_CORRELATOR = {"SVC_DETECT_MSP2_MSP_PEAK_NB": 7, "SVC_DETECT_MSP2_MSP2_PEAK_NB": 5,
                      "SVC_DETECT_ACC1_USE_GAIN_SYMB": 1}

SERVICE_MODEM_COMMON = {
    "SVC_DC_NOTCH_CFG1_ENABLE": 0x00,
    "SVC_RX_DFE_AGC1_FORCE_DEFAULT_FIR": 0x01,
    "SVC_DAGC_CFG_GAIN_DROP_COMP": 0x01,
    "SVC_DAGC_CFG_TARGET_LVL": 0x01,
    "SVC_FINE_TIMING1_GAIN_P_AUTO": 0x03,
    "SVC_FINE_TIMING2_GAIN_I_PAYLOAD": 0x03,
}

SERVICE_GAIN_I_EN_SF11_12 = {125_000: 1, 250_000: 2, 500_000: 3}
"""Integral timing gain the slowest service-channel data rates need, per bandwidth."""

FSK_SYNC_WORD = 0xC194C1
FSK_SYNC_WORD_SIZE = 3
"""LoRaWAN's FSK sync word (Regional Parameters, every region with an FSK data rate)."""

FSK_FRAMING = {
    "SVC_FSK_CFG_1_CH_BW_EXPO": 0x03,
    "SVC_FSK_CFG_3_RX_INVERT": 0,
    "SVC_FSK_CFG_3_MODEM_INVERT_IQ": 0,
    "SVC_FSK_CFG_4_RSSI_LENGTH": 4,
    "SVC_FSK_CFG_0_PKT_MODE": 1,
    "SVC_FSK_CFG_0_CRC_EN": 1,
    "SVC_FSK_CFG_0_DCFREE_ENC": 2,
    "SVC_FSK_CFG_0_CRC_IBM": 0,
    "SVC_FSK_CFG_4_ERROR_OSR_TOL": 10,
    "SVC_FSK_PKT_LENGTH_PKT_LENGTH": 255,
    "SVC_FSK_NODE_ADRS_NODE_ADRS": 0,
    "SVC_FSK_BROADCAST_BROADCAST": 0,
    "SVC_FSK_CFG_3_AUTO_AFC": 1,
    "SVC_FSK_TIMEOUT_MSB_TIMEOUT": 0,
    "SVC_FSK_TIMEOUT_LSB_TIMEOUT": 128,
}
"""LoRaWAN FSK framing: variable length up to 255 bytes, CRC-16 (CCITT), whitening,
no address filtering, automatic frequency correction, 125 kHz channel filter."""


def _write_all(regs: Registers, values: Mapping[str, int]) -> None:
    for name, value in values.items():
        regs.write(name, value)


def freq_to_time_drift(radio_hz: int, bandwidth_hz: int) -> tuple[int, int]:
    """(mantissa, exponent) of bandwidth / carrier, the demodulator's clock-drift factor.

    A crystal error moves both the carrier and the symbol clock; the modem corrects
    the timing from the measured frequency offset scaled by this ratio, held as a
    12-bit mantissa normalised to at least 2048 and a power-of-two exponent.
    """
    mantissa = bandwidth_hz * (1 << 20) // radio_hz
    exponent = 0
    while mantissa < 2048:
        exponent += 1
        mantissa <<= 1
    return mantissa, exponent


def _write_drift(regs: Registers, prefix: str, radio_hz: int, bandwidth_hz: int) -> None:
    mantissa, exponent = freq_to_time_drift(radio_hz, bandwidth_hz)
    regs.write(f"{prefix}FREQ_TO_TIME0_FREQ_TO_TIME_DRIFT_MANT", (mantissa >> 8) & 0xFF)
    regs.write(f"{prefix}FREQ_TO_TIME1_FREQ_TO_TIME_DRIFT_MANT", mantissa & 0xFF)
    regs.write(f"{prefix}FREQ_TO_TIME2_FREQ_TO_TIME_DRIFT_EXP", exponent)
    regs.write(f"{prefix}FREQ_TO_TIME3_FREQ_TO_TIME_INVERT_TIME_SYMB", 1)


def low_data_rate_ppm(sf: int, bandwidth_hz: int) -> bool:
    """Whether symbols are long enough (> 16 ms) for the low-data-rate optimisation."""
    return (bandwidth_hz == 125_000 and sf >= 11) or (bandwidth_hz == 250_000 and sf == 12)


def configure_gpio(regs: Registers) -> None:
    """Status LEDs and the LBT busy input on the chip's GPIOs (reference ``sx1302_init``)."""
    for pin, source in enumerate(GPIO_SELECT):
        regs.write(f"GPIO_GPIO_SEL_{pin}_SELECTION", source)
    regs.write("GPIO_DIR_L", GPIO_DIRECTION)


def configure_front_end(regs: Registers) -> None:
    """PA/LNA control tables, then the radio front-end filters."""
    _write_all(regs, PA_LNA_LUT_HALF_DUPLEX)
    _write_all(regs, RADIO_FRONT_END)


def configure_channel_gain(regs: Registers) -> None:
    _write_all(regs, CHANNELIZER_GAIN)


def configure_correlators(regs: Registers, multi: list[IfChain]) -> None:
    """Detection thresholds for every SF, then which SFs and channels look for preambles."""
    for sf in SPREADING_FACTORS:
        for suffix, value in CORRELATOR_PER_SF.items():
            regs.write(f"RX_TOP_SF{sf}_{suffix}", value)
    regs.write("RX_TOP_CORRELATOR_ENABLE_ONLY_FIRST_DET_EDGE", 0xFF)
    regs.write("RX_TOP_CORRELATOR_ENABLE_ACC_CLEAR", 0xFF)
    sf_mask = 0
    for c in multi:
        for sf in c.channel.spreading_factors:
            sf_mask |= 1 << (sf - 5)
    channel_mask = sum(1 << c.index for c in multi)
    regs.write("RX_TOP_CORRELATOR_SF_EN", sf_mask or 0xFF)
    regs.write("RX_TOP_CORR_CLOCK_ENABLE", channel_mask)
    regs.write("RX_TOP_CORRELATOR_EN", channel_mask)


def configure_multi_sf_modem(regs: Registers, radio_a_hz: int) -> None:
    _write_all(regs, MULTI_SF_MODEM)
    _write_drift(regs, "RX_TOP_", radio_a_hz, 125_000)
    regs.write("RX_TOP_RX_CFG0_DFT_PEAK_EN", DFT_PEAK_AUTO)


def configure_service_modem(regs: Registers, chain: IfChain, radio_a_hz: int) -> None:
    """The single-SF LoRa channel: detection, tracking gains per SF/BW, explicit header."""
    sf = chain.channel.spreading_factors[0]
    bw = chain.channel.bandwidth_hz
    _write_all(regs, SERVICE_CORRELATOR)
    regs.write("SVC_TXRX_CFG2_FINE_SYNCH_EN", int(sf <= 6))
    regs.write("SVC_DETECT_ACC1_ACC_PNR", 52)
    _write_all(regs, SERVICE_MODEM_COMMON)
    if sf <= 6:
        gain_p_preamble, gain_i_en = 0x04, 0x00
    elif sf <= 10:
        gain_p_preamble, gain_i_en = 0x06, 0x00
    else:
        gain_p_preamble, gain_i_en = 0x07, SERVICE_GAIN_I_EN_SF11_12[bw]
    regs.write("SVC_FINE_TIMING1_GAIN_P_PREAMB", gain_p_preamble)
    regs.write("SVC_FINE_TIMING2_GAIN_I_EN", gain_i_en)
    regs.write("SVC_TXRX_CFG2_IMPLICIT_HEADER", 0)  # LoRaWAN frames carry a PHY header
    regs.write("SVC_TXRX_CFG2_CRC_EN", 0)  # with an explicit header the header says
    regs.write("SVC_TXRX_CFG1_CODING_RATE", 0)
    regs.write("SVC_TXRX_CFG3_PAYLOAD_LENGTH", 0)
    regs.write("SERVICE_MODEM_SF", sf)
    regs.write("SERVICE_MODEM_BW", BW_CODES[bw])
    regs.write("SVC_TXRX_CFG1_PPM_OFFSET", int(low_data_rate_ppm(sf, bw)))
    preamble = 12 if sf <= 6 else 8
    regs.write("SVC_TXRX_CFG7_PREAMBLE_SYMB_NB", (preamble >> 8) & 0xFF)
    regs.write("SVC_TXRX_CFG6_PREAMBLE_SYMB_NB", preamble & 0xFF)
    _write_drift(regs, "SVC_", radio_a_hz, bw)
    regs.write("SVC_RX_DFE_AGC2_DAGC_IN_COMP", 1)
    regs.write("SERVICE_MODEM_EN", 1)
    regs.write("SVC_TXRX_CFG2_CADRXTX", 1)
    regs.write("SVC_TXRX_CFG2_MODEM_START", 1)
    regs.write("SVC_RX_CFG0_DFT_PEAK_EN", DFT_PEAK_AUTO)


def configure_fsk(regs: Registers, chain: IfChain) -> None:
    """Sync word (left-aligned in the 8-byte pattern), bit rate and LoRaWAN framing."""
    regs.write("SVC_FSK_CFG_1_PSIZE", FSK_SYNC_WORD_SIZE - 1)
    pattern = FSK_SYNC_WORD << (8 * (8 - FSK_SYNC_WORD_SIZE))
    for i in range(8):
        regs.write(f"SVC_FSK_REF_PATTERN_BYTE{i}_FSK_REF_PATTERN", (pattern >> (8 * i)) & 0xFF)
    bit_rate = 32_000_000 // chain.channel.datarate_bps
    regs.write("FSK_BIT_RATE_MSB", (bit_rate >> 8) & 0xFF)
    regs.write("FSK_BIT_RATE_LSB", bit_rate & 0xFF)
    _write_all(regs, FSK_FRAMING)


def configure_sync_words(regs: Registers, service_sf: int | None, public: bool = True) -> None:
    """LoRa sync word as correlator peak positions: public networks 0x34 → 6/8, else 2/4.

    SF5 and SF6 have no public sync word and always use 2/4.
    """
    for sf in ("SF5", "SF6"):
        regs.write(f"RX_TOP_FRAME_SYNCH0_{sf}_PEAK1_POS", 2)
        regs.write(f"RX_TOP_FRAME_SYNCH1_{sf}_PEAK2_POS", 4)
    regs.write("RX_TOP_FRAME_SYNCH0_SF7TO12_PEAK1_POS", 6 if public else 2)
    regs.write("RX_TOP_FRAME_SYNCH1_SF7TO12_PEAK2_POS", 8 if public else 4)
    service_public = public and service_sf is not None and service_sf >= 7
    regs.write("SERVICE_FRAME_SYNCH0_PEAK1_POS", 6 if service_public else 2)
    regs.write("SERVICE_FRAME_SYNCH1_PEAK2_POS", 8 if service_public else 4)


PRECISION_TS_METRICS_MAX = 32
"""Metrics kept per packet in fine-timestamp mode (``PRECISION_TIMESTAMP_TS_METRICS_MAX``,
loragw_sx1302_timestamp.c: fewer than the 255 possible, to match the GW v2 results)."""


def configure_timestamping(regs: Registers, fine: bool) -> None:
    """Legacy end-of-packet stamps, or the SX1303's precision mode with timing metrics
    (``timestamp_counter_mode``, loragw_sx1302_timestamp.c)."""
    if not fine:
        regs.write("RX_TOP_RX_BUFFER_LEGACY_TIMESTAMP", 1)  # end-of-packet, SX1301 style
        return
    regs.write("RX_TOP_RX_BUFFER_LEGACY_TIMESTAMP", 0)
    regs.write("RX_TOP_RX_BUFFER_TIMESTAMP_CFG_MAX_TS_METRICS", PRECISION_TS_METRICS_MAX)
    regs.write("RX_TOP_TIMESTAMP_ENABLE", 1)
    regs.write("RX_TOP_TIMESTAMP_NB_SYMB", 0)


def configure_receive_path(regs: Registers, layout: RadioLayout, *,
                           fine_timestamp: bool = False) -> None:
    """Everything between radio bring-up and the modem enables, in the reference order."""
    configure_timestamping(regs, fine_timestamp)
    configure_gpio(regs)
    configure_front_end(regs)
    multi = [c for c in layout.chains if c.index < SERVICE_CHAIN]
    regs.write("RX_TOP_RADIO_SELECT", sum(c.rf_chain << c.index for c in multi))
    service = layout.chain(SERVICE_CHAIN)
    fsk = layout.chain(FSK_CHAIN)
    if service is not None:
        regs.write("SERVICE_RADIO_SELECT", service.rf_chain)
    if fsk is not None:
        regs.write("FSK_RADIO_SELECT", fsk.rf_chain)
    for c in layout.chains:
        _write_if(regs, c)
    configure_channel_gain(regs)
    configure_correlators(regs, multi)
    radio_a_hz = layout.centres_hz[0]
    configure_multi_sf_modem(regs, radio_a_hz)
    if service is not None:
        configure_service_modem(regs, service, radio_a_hz)
    if fsk is not None:
        configure_fsk(regs, fsk)
    configure_sync_words(regs, None if service is None else service.channel.spreading_factors[0])


def _write_if(regs: Registers, chain: IfChain) -> None:
    reg = if_to_reg(chain.if_hz)
    prefix = {SERVICE_CHAIN: "SERVICE_FREQ", FSK_CHAIN: "FSK_FREQ"}.get(
        chain.index, f"RX_TOP_FREQ_{chain.index}")
    regs.write(f"{prefix}_MSB", (reg >> 8) & 0x1F)
    regs.write(f"{prefix}_LSB", reg & 0xFF)
