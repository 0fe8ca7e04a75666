"""FSK as the chip needs it: TX programming, uplink stamps and the emulator's FSK model.

Expected register values come from Semtech's reference driver (sx1302_hal 2.1.0,
libloragw/src/loragw_sx1302.c, ``sx1302_send`` FSK case and ``sx1302_parse``).
"""

from __future__ import annotations

import pytest

from hal.backends.emulated import open_emulated
from hal.emulator.chip import Sx1302Emulator, signal_rssi_dbm
from hal.emulator.reset_image import CHIP_RESET_OVERRIDES
from hal.sx1302 import Sx1302Concentrator
from hal.types import EU868_DEFAULT_PLAN, CrcStatus, Modulation, TxPacket, TxTiming

FSK_HZ = 868_800_000


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def radio() -> tuple[Sx1302Concentrator, Sx1302Emulator, FakeClock]:
    clock = FakeClock()
    conc, emu = open_emulated(clock=clock, record_transcript=True)
    conc.start(EU868_DEFAULT_PLAN)
    return conc, emu, clock


def _fsk_downlink(fdev_hz: int = 25_000) -> TxPacket:
    """EU868 DR7: 50 kbit/s GFSK, 25 kHz deviation, bandwidth left 0 as forwarders do."""
    return TxPacket(payload=b"\x60fsk-downlink", frequency_hz=869_525_000, power_dbm=14,
                    modulation=Modulation.FSK, spreading_factor=0, bandwidth_hz=0,
                    timing=TxTiming.IMMEDIATE, datarate_bps=50_000, fdev_hz=fdev_hz,
                    preamble=5, no_crc=False)


def _writes(emu: Sx1302Emulator, address: int) -> list[int]:
    assert emu.transcript is not None
    out = []
    for sent, _ in emu.transcript:
        if sent[0] == 0 and sent[1] & 0x80 and ((sent[1] & 0x7F) << 8 | sent[2]) == address:
            out.append(sent[3])
    return out


def test_fsk_send_hands_the_deviation_to_the_agc_mailbox_as_the_reference_does(
        radio: tuple[Sx1302Concentrator, Sx1302Emulator, FakeClock]) -> None:
    conc, emu, _ = radio
    # start-up leftovers of the AGC handshake would otherwise stay there
    conc.send(_fsk_downlink())
    # 25 kHz · 2^25 / 32 MHz = 26214 = 0x006666 → 0x578A/0x578B/0x578C = 00/66/66
    assert _writes(emu, 0x578A)[-1] == 0x00
    assert _writes(emu, 0x578B)[-1] == 0x66
    assert _writes(emu, 0x578C)[-1] == 0x66
    entry = emu.tx_log[-1]
    assert entry.modulation is Modulation.FSK
    assert abs(entry.fdev_hz - 25_000) <= 1  # what the AGC would configure the SX1250 with
    assert entry.datarate_bps == 50_000


def test_fsk_send_writes_the_bandwidth_byte_0x80(
        radio: tuple[Sx1302Concentrator, Sx1302Emulator, FakeClock]) -> None:
    conc, emu, _ = radio
    conc.send(_fsk_downlink())
    assert _writes(emu, 0x520C)[-1] == 0x80  # (1 << 7) | bandwidth 0
    assert emu.tx_log[-1].agc_bw_byte == 0x80


def test_a_second_fsk_send_with_another_deviation_updates_the_mailbox(
        radio: tuple[Sx1302Concentrator, Sx1302Emulator, FakeClock]) -> None:
    conc, emu, clock = radio
    conc.send(_fsk_downlink(25_000))
    clock.t += 1.0
    conc.send(_fsk_downlink(50_000))
    assert abs(emu.tx_log[-1].fdev_hz - 50_000) <= 1  # one SX1250 step is 0.95 Hz


def test_lora_send_keeps_its_bandwidth_code(
        radio: tuple[Sx1302Concentrator, Sx1302Emulator, FakeClock]) -> None:
    conc, emu, _ = radio
    conc.send(TxPacket(payload=b"x", frequency_hz=869_525_000, power_dbm=14,
                       modulation=Modulation.LORA, spreading_factor=9, bandwidth_hz=125_000,
                       timing=TxTiming.IMMEDIATE))
    assert emu.tx_log[-1].agc_bw_byte == 0x04


def test_fsk_uplink_is_decoded_with_the_reference_timestamp_correction(
        radio: tuple[Sx1302Concentrator, Sx1302Emulator, FakeClock]) -> None:
    conc, emu, clock = radio
    rate = 50_000  # the default plan's FSK channel
    clock.t += 2.0
    end = emu.inject_fsk(b"\x40fsk-uplink", frequency_hz=FSK_HZ, datarate_bps=rate,
                         rssi_dbm=-70.0)
    assert end is not None
    (pkt,) = conc.receive()
    assert pkt.modulation is Modulation.FSK and pkt.datarate_bps == rate
    assert pkt.payload == b"\x40fsk-uplink" and pkt.crc_status is CrcStatus.CRC_OK
    assert pkt.count_us == end  # stamp + (680000/50000 − 20): subtracting it lands 14 µs off
    assert abs(pkt.rssi_dbm - (-70.0)) < 1.5


def test_fsk_frames_at_another_bit_rate_or_frequency_are_not_heard(
        radio: tuple[Sx1302Concentrator, Sx1302Emulator, FakeClock]) -> None:
    _, emu, _ = radio
    assert emu.inject_fsk(b"x", frequency_hz=FSK_HZ, datarate_bps=19_200, rssi_dbm=-70) is None
    assert emu.inject_fsk(b"x", frequency_hz=868_100_000, datarate_bps=50_000,
                          rssi_dbm=-70) is None


def test_fsk_correction_sign_matters_at_19200_bits() -> None:
    from hal.timing import fsk_decoder_delay_us
    assert fsk_decoder_delay_us(50_000) == 680_000 // 50_000 - 20 == -7
    assert fsk_decoder_delay_us(19_200) == 15


def test_signal_rssi_sits_below_channel_rssi_at_low_snr(
        radio: tuple[Sx1302Concentrator, Sx1302Emulator, FakeClock]) -> None:
    conc, emu, clock = radio
    clock.t += 1.0
    emu.inject(b"low", frequency_hz=868_100_000, sf=10, bw_hz=125_000, rssi_dbm=-110.0,
               snr_db=-10.0)
    clock.t += 1.0
    emu.inject(b"high", frequency_hz=868_100_000, sf=10, bw_hz=125_000, rssi_dbm=-60.0,
               snr_db=10.0)
    low, high = conc.receive()
    assert low.rssi_signal_dbm is not None and high.rssi_signal_dbm is not None
    assert low.rssi_signal_dbm < low.rssi_dbm - 9  # ≈ −120.4 dBm
    assert abs(high.rssi_signal_dbm - high.rssi_dbm) < 1
    assert abs(signal_rssi_dbm(-110.0, -10.0) - (-120.41)) < 0.01


def test_emulator_models_gpio_outputs_and_the_chips_reset_bytes(
        radio: tuple[Sx1302Concentrator, Sx1302Emulator, FakeClock]) -> None:
    _, emu, _ = radio
    outputs = emu.gpio_outputs()
    assert outputs, "the driver sets the status LED pins as outputs"
    fresh = Sx1302Emulator()
    # TX frame sync of chain A resets to the chip's value, not 0 (loragw_reg.c defaults)
    assert fresh.transfer(bytes((0, 0x52, 0x69, 0, 0)))[4] == CHIP_RESET_OVERRIDES[0x5269]
