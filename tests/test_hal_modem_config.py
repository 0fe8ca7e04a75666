"""The receive tuning the driver writes at bring-up, read back from the emulated chip.

Expected values are taken by hand from Semtech's reference driver (sx1302_hal 2.1.0,
loragw_sx1302.c: the function named in each test), not computed by the code under
test, so a wrong table or a wrong formula both show.
"""

from __future__ import annotations

import dataclasses

import pytest

from hal.backends.emulated import open_emulated
from hal.emulator.chip import Sx1302Emulator
from hal.modem_config import configure_sync_words, freq_to_time_drift
from hal.registers import Registers
from hal.sx1302 import Sx1302Concentrator
from hal.types import EU868_DEFAULT_PLAN, Channel, ChannelPlan, Modulation, TxPacket, TxTiming


def started(plan: ChannelPlan = EU868_DEFAULT_PLAN) -> tuple[Registers, Sx1302Concentrator,
                                                             Sx1302Emulator]:
    conc, emu = open_emulated(clock=lambda: 100.0)
    conc.start(plan)
    return conc._regs, conc, emu


def test_drift_factor_matches_hand_computed_values() -> None:
    # calculate_freq_to_time_drift: bw * 2^20 / f, doubled until >= 2048
    assert freq_to_time_drift(867_500_000, 125_000) == (2416, 4)  # 151 -> 2416
    assert freq_to_time_drift(868_300_000, 250_000) == (2408, 3)  # 301 -> 2408
    assert freq_to_time_drift(923_300_000, 500_000) == (2268, 2)  # 567 -> 2268


def test_correlator_thresholds_for_every_sf_and_channel_enables() -> None:
    regs, _, _ = started()  # sx1302_lora_correlator_configure
    for sf in range(5, 13):
        assert regs.read(f"RX_TOP_SF{sf}_CFG2_ACC_PNR") == 52
        assert regs.read(f"RX_TOP_SF{sf}_CFG4_MSP_PNR") == 24
        assert regs.read(f"RX_TOP_SF{sf}_CFG6_MSP_PEAK_NB") == 7
        assert regs.read(f"RX_TOP_SF{sf}_CFG7_MSP2_PEAK_NB") == 5
    assert regs.read("RX_TOP_CORRELATOR_EN") == 0xFF
    assert regs.read("RX_TOP_CORRELATOR_SF_EN") == 0b1111_1100  # SF7..SF12


def test_front_end_and_channel_gain() -> None:
    regs, _, _ = started()  # sx1302_pa_lna_lut_configure, _radio_fe_configure, _channelizer
    assert regs.read("AGC_MCU_LUT_TABLE_A_PA_LUT") == 0x04
    assert regs.read("AGC_MCU_LUT_TABLE_A_LNA_LUT") == 0x02
    for r in "AB":
        assert regs.read(f"RADIO_FE_RSSI_DB_DEF_RADIO_{r}_RSSI_DB_DEFAULT_VALUE") == 23
        assert regs.read(f"RADIO_FE_RSSI_DEC_DEF_RADIO_{r}_RSSI_DEC_DEFAULT_VALUE") == 66
        assert regs.read(f"RADIO_FE_CTRL0_RADIO_{r}_DC_NOTCH_EN") == 1
        assert regs.read(f"RADIO_FE_CTRL0_RADIO_{r}_HOST_FILTER_GAIN") == 0x0B
    assert regs.read("RX_TOP_RSSI_DEF_VALUE_CHAN_RSSI_DEF_VALUE") == 85
    assert regs.read("RX_TOP_CHANN_DAGC_CFG5_CHAN_DAGC_MODE") == 1
    assert regs.read("RX_TOP_CHANN_DAGC_CFG3_CHAN_DAGC_MAX_ATTEN") == 15
    assert [regs.read(f"GPIO_GPIO_SEL_{i}_SELECTION") for i in range(8)] == [0, 0, 9, 0, 9, 0,
                                                                             0, 1]


def test_multi_sf_modem_tracking_offsets_and_drift() -> None:
    regs, _, _ = started()  # sx1302_lora_modem_configure
    pairs = ["01", "01", "23", "23", "45", "45", "67", "67"]
    offsets = [regs.read(f"ARB_MCU_CHANNEL_SYNC_OFFSET_{pairs[c]}_CHANNEL_{c}_OFFSET")
               for c in range(8)]
    assert offsets == [1, 5, 9, 13, 1, 5, 9, 13]
    ppm = [regs.read(f"RX_TOP_MODEM_PPM_OFFSET{1 if sf <= 8 else 2}_PPM_OFFSET_SF{sf}")
           for sf in range(5, 13)]
    assert ppm == [0, 0, 0, 0, 0, 0, 1, 1]
    assert regs.read("RX_TOP_MODEM_SYNC_DELTA_LSB_MODEM_SYNC_DELTA") == 126
    assert regs.read("RX_TOP_FREQ_TRACK4_FREQ_SYNCH_THR") == 15
    assert regs.read("RX_TOP_FREQ_TRACK_A_1_FREQ_TRACK_EN_SF12") == 3
    assert regs.read("RX_TOP_FREQ_TRACK_B_1_FREQ_TRACK_EN_SF12") == 0
    assert regs.read("RX_TOP_FINE_TIMING_B_0_MODE") == 2
    assert regs.read("RX_TOP_TXRX_CFG6_PREAMBLE_SYMB_NB") == 10
    assert regs.read("RX_TOP_RX_CFG0_DFT_PEAK_EN") == 3
    # the driver centres radio A of the default EU868 plan on 867.5 MHz: 2416 = 0x970, 2^4
    assert (regs.read("RX_TOP_FREQ_TO_TIME0_FREQ_TO_TIME_DRIFT_MANT"),
            regs.read("RX_TOP_FREQ_TO_TIME1_FREQ_TO_TIME_DRIFT_MANT"),
            regs.read("RX_TOP_FREQ_TO_TIME2_FREQ_TO_TIME_DRIFT_EXP")) == (0x09, 0x70, 4)


@pytest.mark.parametrize(("sf", "bw", "preamb_gain", "gain_i_en", "ppm", "preamble"), [
    (7, 250_000, 6, 0, 0, 8),
    (10, 125_000, 6, 0, 0, 8),
    (11, 250_000, 7, 2, 0, 8),
    (12, 125_000, 7, 1, 1, 8),
    (12, 250_000, 7, 2, 1, 8),
    (12, 500_000, 7, 3, 0, 8),
])
def test_service_modem_settings_follow_its_sf_and_bandwidth(
        sf: int, bw: int, preamb_gain: int, gain_i_en: int, ppm: int, preamble: int) -> None:
    plan = dataclasses.replace(EU868_DEFAULT_PLAN, lora_service=Channel(868_300_000, bw, (sf,)))
    regs, _, _ = started(plan)  # sx1302_lora_service_modem_configure
    assert regs.read("SERVICE_MODEM_SF") == sf
    assert regs.read("SVC_FINE_TIMING1_GAIN_P_PREAMB") == preamb_gain
    assert regs.read("SVC_FINE_TIMING2_GAIN_I_EN") == gain_i_en
    assert regs.read("SVC_TXRX_CFG1_PPM_OFFSET") == ppm
    assert regs.read("SVC_TXRX_CFG6_PREAMBLE_SYMB_NB") == preamble
    assert regs.read("SVC_TXRX_CFG2_MODEM_START") == 1
    assert regs.read("SERVICE_MODEM_EN") == 1


def test_fsk_sync_word_bit_rate_and_framing() -> None:
    regs, _, _ = started()  # sx1302_fsk_configure with LoRaWAN's 0xC194C1
    pattern = [regs.read(f"SVC_FSK_REF_PATTERN_BYTE{i}_FSK_REF_PATTERN") for i in range(8)]
    assert pattern == [0, 0, 0, 0, 0, 0xC1, 0x94, 0xC1]
    assert regs.read("SVC_FSK_CFG_1_PSIZE") == 2
    assert (regs.read("FSK_BIT_RATE_MSB"), regs.read("FSK_BIT_RATE_LSB")) == (0x02, 0x80)
    assert regs.read("SVC_FSK_CFG_0_DCFREE_ENC") == 2
    assert regs.read("SVC_FSK_PKT_LENGTH_PKT_LENGTH") == 255


def test_plan_without_service_or_fsk_leaves_those_modems_off() -> None:
    plan = ChannelPlan(multi_sf=EU868_DEFAULT_PLAN.multi_sf[:3])
    regs, _, _ = started(plan)
    assert regs.read("SERVICE_MODEM_EN") == 0
    assert regs.read("SVC_TXRX_CFG2_MODEM_START") == 0
    assert regs.read("COMMON_GEN_FSK_MODEM_ENABLE") == 0
    assert regs.read("RX_TOP_CORRELATOR_EN") == 0b111


def test_private_sync_word_makes_the_chip_deaf_to_lorawan_frames() -> None:
    regs, conc, emu = started()  # sx1302_lora_syncword
    assert (regs.read("RX_TOP_FRAME_SYNCH0_SF7TO12_PEAK1_POS"),
            regs.read("RX_TOP_FRAME_SYNCH1_SF7TO12_PEAK2_POS")) == (6, 8)
    assert emu.inject(b"public", frequency_hz=868_100_000, sf=9, bw_hz=125_000,
                      rssi_dbm=-80, snr_db=5) is not None
    configure_sync_words(regs, service_sf=7, public=False)
    assert (regs.read("RX_TOP_FRAME_SYNCH0_SF7TO12_PEAK1_POS"),
            regs.read("SERVICE_FRAME_SYNCH0_PEAK1_POS")) == (2, 2)
    assert emu.inject(b"public", frequency_hz=868_100_000, sf=9, bw_hz=125_000,
                      rssi_dbm=-80, snr_db=5) is None
    assert emu.inject(b"sf6", frequency_hz=868_100_000, sf=6, bw_hz=125_000,
                      rssi_dbm=-80, snr_db=5) is None  # SF6 is not in the correlator mask
    assert [p.payload for p in conc.receive()] == [b"public"]


def test_fsk_downlink_carries_the_lorawan_sync_word_and_framing() -> None:
    regs, conc, emu = started()  # sx1302_send, FSK branch
    conc.send(TxPacket(payload=b"fsk!", frequency_hz=868_800_000, power_dbm=14,
                       modulation=Modulation.FSK, spreading_factor=0, bandwidth_hz=125_000,
                       datarate_bps=50_000, fdev_hz=25_000,
                       timing=TxTiming.IMMEDIATE))
    pattern = [regs.read(f"TX_A_FSK_REF_PATTERN_BYTE{i}") for i in range(8)]
    assert pattern == [0, 0, 0, 0, 0, 0xC1, 0x94, 0xC1]
    assert regs.read("TX_A_FSK_MOD_REF_PATTERN_SIZE") == 2
    assert regs.read("TX_A_FSK_MOD_GAUSSIAN_EN") == 1
    assert regs.read("TX_A_FSK_CFG_0_DCFREE_ENC") == 2
    assert emu.tx_log[0].payload == b"fsk!"
