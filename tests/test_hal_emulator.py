"""The emulator's chip behaviour seen through the driver: TX, PPS, FIFO bound, radio gating."""

from __future__ import annotations

import pytest

from hal.backends.emulated import open_emulated
from hal.emulator.chip import FIFO_CAPACITY, Sx1302Emulator
from hal.rx_record import MIN_RECORD
from hal.spi import Sx1302Spi
from hal.sx1250 import GET_STATUS
from hal.sx1302 import Sx1302Concentrator
from hal.tx import TxParamError
from hal.types import EU868_DEFAULT_PLAN, Modulation, TxPacket, TxState, TxTiming
from tests.support.fakes import FakeClock


@pytest.fixture
def radio() -> tuple[Sx1302Concentrator, Sx1302Emulator, FakeClock]:
    clock = FakeClock(50.0)
    conc, emu = open_emulated(clock=clock)
    conc.start(EU868_DEFAULT_PLAN)
    return conc, emu, clock


def _packet(**kw: object) -> TxPacket:
    base: dict[str, object] = dict(payload=b"\x60downlink", frequency_hz=869_525_000,
                                   power_dbm=14, modulation=Modulation.LORA, spreading_factor=9,
                                   bandwidth_hz=125_000, code_rate="4/5")
    base.update(kw)
    return TxPacket(**base)  # type: ignore[arg-type]


def test_timestamped_tx_is_scheduled_then_emitted_then_free(
        radio: tuple[Sx1302Concentrator, Sx1302Emulator, FakeClock]) -> None:
    conc, emu, clock = radio
    start = conc.counter_us() + 500_000
    conc.send(_packet(count_us=start))
    [entry] = emu.tx_log
    assert entry.start_count_us == start
    assert entry.payload == b"\x60downlink"
    assert abs(entry.frequency_hz - 869_525_000) <= 122  # 2^18 / 32 MHz register steps
    assert (entry.power_dbm, entry.power_reg) == (14, 17)
    assert (entry.spreading_factor, entry.bandwidth_hz, entry.code_rate) == (9, 125_000, "4/5")
    assert entry.invert_polarity and not entry.crc and entry.preamble == 8
    assert conc.tx_state() is TxState.SCHEDULED
    clock.t += 0.5
    assert conc.tx_state() is TxState.EMITTING
    clock.t += 1.0
    assert conc.tx_state() is TxState.FREE


def test_power_between_table_steps_rounds_down(
        radio: tuple[Sx1302Concentrator, Sx1302Emulator, FakeClock]) -> None:
    conc, emu, _ = radio
    conc.send(_packet(timing=TxTiming.IMMEDIATE, power_dbm=27))
    conc.send(_packet(timing=TxTiming.IMMEDIATE, power_dbm=10, rf_chain=1))
    assert [(e.power_dbm, e.power_reg) for e in emu.tx_log] == [(27, 0x40 | 14), (12, 15)]


def test_immediate_and_pps_triggers(
        radio: tuple[Sx1302Concentrator, Sx1302Emulator, FakeClock]) -> None:
    conc, emu, clock = radio
    conc.send(_packet(timing=TxTiming.IMMEDIATE))
    assert emu.tx_log[0].start_count_us == emu.counter_us()
    assert conc.tx_state() is TxState.EMITTING
    clock.t += 2
    conc.send(_packet(timing=TxTiming.ON_GPS_PPS, payload=b"beacon"))
    assert len(emu.tx_log) == 1 and conc.tx_state() is TxState.SCHEDULED
    clock.t += 0.3
    emu.pps()
    assert emu.tx_log[1].payload == b"beacon"
    assert emu.tx_log[1].start_count_us == conc.pps_counter_us() == emu.counter_us()


def test_stuck_tx_never_frees(radio: tuple[Sx1302Concentrator, Sx1302Emulator, FakeClock]) -> None:
    conc, emu, clock = radio
    emu.stuck_tx = True
    conc.send(_packet(timing=TxTiming.IMMEDIATE))
    clock.t += 60
    assert conc.tx_state() is TxState.EMITTING


def test_fsk_tx_is_loaded_with_its_length_byte(
        radio: tuple[Sx1302Concentrator, Sx1302Emulator, FakeClock]) -> None:
    conc, emu, _ = radio
    conc.send(_packet(modulation=Modulation.FSK, datarate_bps=50_000, fdev_hz=25_000,
                      spreading_factor=0, timing=TxTiming.IMMEDIATE, payload=b"fsk!"))
    assert (emu.tx_log[0].modulation, emu.tx_log[0].payload) == (Modulation.FSK, b"fsk!")


@pytest.mark.parametrize("bad", [dict(spreading_factor=13), dict(bandwidth_hz=200_000),
                                 dict(payload=b""), dict(rf_chain=2), dict(code_rate="5/4")])
def test_impossible_tx_requests_are_refused(
        radio: tuple[Sx1302Concentrator, Sx1302Emulator, FakeClock],
        bad: dict[str, object]) -> None:
    conc, emu, _ = radio
    with pytest.raises(TxParamError):
        conc.send(_packet(**bad))
    assert emu.tx_log == []


def test_fifo_is_bounded_and_overflow_is_counted(
        radio: tuple[Sx1302Concentrator, Sx1302Emulator, FakeClock]) -> None:
    conc, emu, _ = radio
    kw = dict(frequency_hz=868_100_000, sf=7, bw_hz=125_000, rssi_dbm=-60.0, snr_db=5.0)
    fits = FIFO_CAPACITY // (MIN_RECORD + 200)
    for _ in range(fits):
        assert emu.rx_fifo_has_room(200)
        assert emu.inject(bytes(200), **kw) is not None  # type: ignore[arg-type]
    assert not emu.rx_fifo_has_room(200)
    assert emu.inject(bytes(200), **kw) is None  # type: ignore[arg-type]
    assert emu.fifo_overflows == 1
    assert len(conc.receive()) == fits
    assert emu.rx_fifo_has_room(200)


def test_radios_answer_only_when_enabled_and_out_of_reset() -> None:
    emu = Sx1302Emulator()
    spi = Sx1302Spi(emu)
    assert spi.radio_command(0, GET_STATUS, b"\x00") == b"\x00"
    spi.write(0x5783, 0b1100)  # radio A: enable + reset released
    assert spi.radio_command(0, GET_STATUS, b"\x00") == b"\x20"  # standby RC
    assert spi.radio_command(1, GET_STATUS, b"\x00") == b"\x00"


def test_counter_read_transcript_is_the_8_byte_block() -> None:
    clock = FakeClock(50.0)
    conc, emu = open_emulated(clock=clock, record_transcript=True)
    conc.start(EU868_DEFAULT_PLAN)
    assert emu.transcript is not None
    emu.transcript.clear()
    clock.t += 1.0
    us = conc.counter_us()
    assert [tx for tx, _ in emu.transcript] == [b"\x00\x61\x01\x00" + bytes(8)] * 2
    rx = emu.transcript[0][1]
    assert int.from_bytes(rx[8:12], "big") // 32 == us == 1_000_000


def test_read_only_registers_ignore_writes() -> None:
    spi = Sx1302Spi(Sx1302Emulator())
    spi.write(0x5606, 0x99)
    assert spi.read(0x5606) == 0x10


def test_burst_reads_agree_with_byte_reads_across_computed_registers() -> None:
    """A burst is served as one slice of the register file when it can be: across the
    counter block, the RX fill level and ordinary registers it must still read what
    reading each byte on its own reads."""
    clock = FakeClock(50.0)
    conc, emu = open_emulated(clock=clock)
    conc.start(EU868_DEFAULT_PLAN)
    emu.inject(bytes(20), frequency_hz=868_100_000, sf=7, bw_hz=125_000, rssi_dbm=-60.0,
               snr_db=5.0)
    spi = Sx1302Spi(emu)
    for address, size in ((0x6100, 16), (0x6103, 3), (0x58C0, 16), (0x5600, 32), (0, 64)):
        burst = spi.burst_read(address, size)
        assert burst == bytes(spi.read(address + i) for i in range(size)), hex(address)
    assert spi.burst_read(0x6101, 8)[4:] == spi.burst_read(0x6105, 4)  # the counter
    assert spi.burst_read(0x58C8, 2) != bytes(2)  # the fill level: the record injected


def test_a_register_write_changes_which_chain_hears_at_once(
        radio: tuple[Sx1302Concentrator, Sx1302Emulator, FakeClock]) -> None:
    """The chain that hears a (frequency, SF, bandwidth) is remembered between frames,
    but never across a register write: disabling the multi-SF chains silences them."""
    _, emu, _ = radio
    kw = dict(frequency_hz=868_100_000, sf=7, bw_hz=125_000, rssi_dbm=-60.0, snr_db=5.0)
    spi = Sx1302Spi(emu)
    enabled = spi.read(0x5821)
    assert emu.inject(bytes(10), **kw) is not None  # type: ignore[arg-type]
    assert emu.inject(bytes(10), **kw) is not None  # type: ignore[arg-type]
    spi.write(0x5821, 0)
    assert emu.inject(bytes(10), **kw) is None  # type: ignore[arg-type]
    spi.write(0x5821, enabled)
    assert emu.inject(bytes(10), **kw) is not None  # type: ignore[arg-type]
