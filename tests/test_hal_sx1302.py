"""The SX1302 driver end to end against the SPI-level emulator."""

from __future__ import annotations

import random
import threading

import pytest

from hal.backends.emulated import open_emulated
from hal.emulator.chip import Sx1302Emulator
from hal.errors import ChipNotAnsweringError, PlanError
from hal.sx1302 import NotStartedError, Sx1302Concentrator
from hal.types import (
    EU868_DEFAULT_PLAN,
    Channel,
    ChannelPlan,
    CrcStatus,
    Modulation,
    RxPacket,
)
from tests.support.fakes import FakeClock

MULTI_SF = [c.frequency_hz for c in EU868_DEFAULT_PLAN.multi_sf]


@pytest.fixture
def radio() -> tuple[Sx1302Concentrator, Sx1302Emulator, FakeClock]:
    clock = FakeClock()
    conc, emu = open_emulated(clock=clock)
    conc.start(EU868_DEFAULT_PLAN)
    return conc, emu, clock


def test_fifty_random_packets_come_back_intact_and_in_order(
        radio: tuple[Sx1302Concentrator, Sx1302Emulator, FakeClock]) -> None:
    conc, emu, clock = radio
    rng = random.Random(1302)
    sent = []
    received: list[RxPacket] = []
    for i in range(50):
        payload = rng.randbytes(rng.randint(1, 64))
        f, sf = rng.choice(MULTI_SF), rng.randint(7, 12)
        rssi, snr = rng.uniform(-130, -30), rng.uniform(-20, 12)
        clock.t += 1.5
        count = emu.inject(payload, frequency_hz=f, sf=sf, bw_hz=125_000,
                           cr=rng.choice(("4/5", "4/6", "4/7", "4/8")), rssi_dbm=rssi, snr_db=snr)
        assert count is not None
        sent.append((payload, f, sf, rssi, snr, count))
        if i % 7 == 6:
            received += conc.receive()
    received += conc.receive()
    assert len(received) == 50
    for (payload, f, sf, rssi, snr, count), p in zip(sent, received, strict=True):
        assert (p.payload, p.frequency_hz, p.spreading_factor, p.bandwidth_hz) == \
            (payload, f, sf, 125_000)
        assert p.modulation is Modulation.LORA and p.crc_status is CrcStatus.CRC_OK
        assert abs(p.rssi_dbm - rssi) <= 0.5  # 1 dB steps
        assert abs(p.snr_db - snr) <= 0.125  # 0.25 dB steps
        assert p.count_us == count
        assert abs(p.freq_offset_hz) < 1000  # IF register resolution is 488 Hz
    counts = [p.count_us for p in received]
    assert counts == sorted(counts) and len(set(counts)) == 50
    assert conc.rx_errors.counts == {}


def test_service_channel_and_crc_error_are_reported(
        radio: tuple[Sx1302Concentrator, Sx1302Emulator, FakeClock]) -> None:
    conc, emu, _ = radio
    emu.inject(b"svc", frequency_hz=868_300_000, sf=7, bw_hz=250_000, rssi_dbm=-60, snr_db=9)
    emu.inject(b"bad", frequency_hz=867_100_000, sf=9, bw_hz=125_000, rssi_dbm=-60, snr_db=9,
               crc_ok=False)
    svc, bad = conc.receive()
    assert (svc.if_chain, svc.bandwidth_hz, svc.modem_id) == (8, 250_000, 16)
    assert bad.crc_status is CrcStatus.BAD_CRC and bad.payload == b"bad"


def test_frames_the_chip_cannot_hear_are_not_received(
        radio: tuple[Sx1302Concentrator, Sx1302Emulator, FakeClock]) -> None:
    conc, emu, _ = radio
    assert emu.inject(b"x", frequency_hz=869_525_000, sf=9, bw_hz=125_000,
                      rssi_dbm=-60, snr_db=9) is None
    assert emu.inject(b"x", frequency_hz=868_100_000, sf=9, bw_hz=500_000,
                      rssi_dbm=-60, snr_db=9) is None
    assert conc.receive() == []


@pytest.mark.parametrize(("fault", "reason"), [
    ("corrupt_next_record", "bad_checksum"), ("truncate_next_record", "truncated")])
def test_bad_records_are_dropped_counted_and_later_ones_survive(
        radio: tuple[Sx1302Concentrator, Sx1302Emulator, FakeClock], fault: str,
        reason: str) -> None:
    conc, emu, _ = radio
    kw = {"frequency_hz": 868_100_000, "sf": 7, "bw_hz": 125_000, "rssi_dbm": -60, "snr_db": 9}
    emu.inject(b"first", **kw)  # type: ignore[arg-type]
    getattr(emu, fault)()
    emu.inject(b"broken", **kw)  # type: ignore[arg-type]
    assert [p.payload for p in conc.receive()] == [b"first"]
    assert conc.rx_errors.counts == {reason: 1}
    emu.inject(b"after", **kw)  # type: ignore[arg-type]
    assert [p.payload for p in conc.receive()] == [b"after"]


def test_no_answer_names_the_spi_device() -> None:
    emu = Sx1302Emulator()
    emu.no_answer = True
    conc = Sx1302Concentrator(emu, spi_name="/dev/spidev0.0", sleep=lambda s: None)
    with pytest.raises(ChipNotAnsweringError, match=r"/dev/spidev0\.0.*SPI is enabled"):
        conc.start(EU868_DEFAULT_PLAN)


def test_bad_plan_is_refused_before_any_spi_traffic() -> None:
    conc, emu = open_emulated(record_transcript=True)
    plan = ChannelPlan(multi_sf=(Channel(863_100_000), Channel(866_000_000), Channel(869_900_000)))
    with pytest.raises(PlanError):
        conc.start(plan)
    assert emu.transcript == []


def test_calls_before_start_raise_not_started() -> None:
    conc, _ = open_emulated()
    with pytest.raises(NotStartedError):
        conc.receive()


def test_start_tunes_radios_and_ifs_through_the_mux(
        radio: tuple[Sx1302Concentrator, Sx1302Emulator, FakeClock]) -> None:
    _, emu, _ = radio
    centres = emu.radio_centres_hz()
    assert centres[0] == pytest.approx(867_500_000, abs=1)
    assert centres[1] == pytest.approx(868_450_000, abs=1)
    assert emu.radios[0].image_calibrations == [b"\xd7\xdb"]
    got = emu.channel_frequencies()
    assert sorted(got) == list(range(10))
    for index, ch in enumerate([*EU868_DEFAULT_PLAN.multi_sf, EU868_DEFAULT_PLAN.lora_service,
                                EU868_DEFAULT_PLAN.fsk]):
        assert ch is not None and got[index] == pytest.approx(ch.frequency_hz, abs=500)


def test_stop_stops_reception_and_start_again_works(
        radio: tuple[Sx1302Concentrator, Sx1302Emulator, FakeClock]) -> None:
    conc, emu, _ = radio
    conc.stop()
    assert emu.inject(b"x", frequency_hz=868_100_000, sf=7, bw_hz=125_000,
                      rssi_dbm=-60, snr_db=9) is None
    conc.start(EU868_DEFAULT_PLAN)
    emu.inject(b"y", frequency_hz=868_100_000, sf=7, bw_hz=125_000, rssi_dbm=-60, snr_db=9)
    assert [p.payload for p in conc.receive()] == [b"y"]


def test_large_fifo_batches_are_read_in_1024_byte_chunks_at_one_address() -> None:
    conc, emu = open_emulated(record_transcript=True)
    conc.start(EU868_DEFAULT_PLAN)
    for i in range(20):
        emu.inject(bytes([i]) * 100, frequency_hz=867_300_000, sf=8, bw_hz=125_000,
                   rssi_dbm=-90, snr_db=1)
    assert emu.transcript is not None
    emu.transcript.clear()
    assert len(conc.receive()) == 20
    fifo = [tx for tx, _ in emu.transcript if tx[:3] == b"\x00\x40\x00"]
    assert [len(tx) - 4 for tx in fifo] == [1024, 1024, 20 * 123 - 2048]


def test_inject_from_another_thread_while_receiving() -> None:
    conc, emu = open_emulated()
    conc.start(EU868_DEFAULT_PLAN)
    done = threading.Event()

    def sender() -> None:
        for i in range(300):
            while not emu.rx_fifo_has_room(4):
                pass
            emu.inject(i.to_bytes(4, "big"), frequency_hz=868_500_000, sf=7, bw_hz=125_000,
                       rssi_dbm=-80, snr_db=3)
        done.set()

    thread = threading.Thread(target=sender)
    thread.start()
    got: list[RxPacket] = []
    while not done.is_set() or len(got) < 300:
        got += conc.receive()
    thread.join()
    assert [int.from_bytes(p.payload, "big") for p in got] == list(range(300))
    assert conc.rx_errors.counts == {}


def test_eui_reads_otp_byte_by_byte() -> None:
    conc, emu = open_emulated(eui=bytes.fromhex("0102030405060708"), record_transcript=True)
    assert conc.eui() == bytes.fromhex("0102030405060708")
    expected = []
    for i in range(8):
        expected.append(bytes((0x00, 0x80 | 0x61, 0x80, i)))
        expected.append(bytes((0x00, 0x61, 0x81, 0x00, 0x00)))
    assert emu.transcript is not None
    assert [tx for tx, _ in emu.transcript] == expected
    assert [rx[4] for tx, rx in emu.transcript if tx[1] == 0x61 and tx[2] == 0x81] == \
        list(range(1, 9))
