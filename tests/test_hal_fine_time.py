"""SX1303 fine timestamps: precision mode on the chip, metrics into ns since the PPS.

The arithmetic is Semtech's (``precise_timestamp_calculate`` and
``precision_timestamp_correction``, sx1302_hal 2.1.0 loragw_sx1302_timestamp.c).
"""

from __future__ import annotations

import pytest

from hal.backends.emulated import open_emulated
from hal.emulator.chip import MODEL_SX1302, MODEL_SX1303, TICK_HZ, Sx1302Emulator
from hal.fine_time import (
    FineTimestamper,
    dc_notch_delay_ticks,
    metrics_mean,
    preamble_offset_ticks,
)
from hal.sx1302 import Sx1302Concentrator
from hal.timing import precision_timestamp_correction_us
from hal.types import EU868_DEFAULT_PLAN


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _started(model: int, board: str = "emulator") -> tuple[Sx1302Concentrator, Sx1302Emulator,
                                                             FakeClock]:
    clock = FakeClock()
    conc, emu = open_emulated(clock=clock, model_id=model, board=board)
    conc.start(EU868_DEFAULT_PLAN)
    return conc, emu, clock


def _pps_seconds(conc: Sx1302Concentrator, emu: Sx1302Emulator, clock: FakeClock,
                 n: int) -> None:
    """``n`` GPS seconds: a PPS edge exactly each second, the driver reading the counter."""
    for _ in range(n):
        clock.t = float(int(clock.t) + 1)
        emu.pps(at_ticks=emu.ticks())
        clock.t += 0.01
        conc.counter_us()


def test_sx1303_reports_the_fine_time_the_emulator_meant() -> None:
    conc, emu, clock = _started(MODEL_SX1303)
    assert conc.fine_timestamp
    _pps_seconds(conc, emu, clock, 16)
    for sf in (7, 10, 12):
        clock.t += 0.3137
        end = emu.inject(b"\x40tdoa" + bytes([sf]), frequency_hz=868_300_000, sf=sf,
                         bw_hz=125_000, rssi_dbm=-80, snr_db=5)
        (pkt,) = conc.receive()
        assert pkt.count_us == end  # precision stamp + payload duration − filter delay
        assert pkt.fine_time_ns is not None and pkt.fine_time_pps_count_us is not None
        # within 3 ticks: the driver, as the reference, folds the IF register's rounding
        # into the frequency error that stretches the preamble offset (~2 ticks at SF12)
        assert abs(pkt.fine_time_ns - emu.fine.true_fine_ns[-1]) < 3 * 31.25
        # the reference PPS is the last edge before the packet
        assert 0 < (pkt.count_us - pkt.fine_time_pps_count_us) % (1 << 32) < 1_000_000


def test_no_fine_time_until_sixteen_pps_edges_were_seen() -> None:
    conc, emu, clock = _started(MODEL_SX1303)
    _pps_seconds(conc, emu, clock, 15)
    clock.t += 0.2
    end = emu.inject(b"\x40early", frequency_hz=868_100_000, sf=9, bw_hz=125_000,
                     rssi_dbm=-80, snr_db=5)
    (pkt,) = conc.receive()
    assert pkt.fine_time_ns is None and pkt.count_us == end


def test_sx1302_keeps_legacy_stamps_and_has_no_fine_time() -> None:
    conc, emu, clock = _started(MODEL_SX1302)
    assert not conc.fine_timestamp
    _pps_seconds(conc, emu, clock, 16)
    clock.t += 0.2
    end = emu.inject(b"\x40legacy", frequency_hz=868_100_000, sf=9, bw_hz=125_000,
                     rssi_dbm=-80, snr_db=5)
    (pkt,) = conc.receive()
    assert pkt.fine_time_ns is None and pkt.count_us == end
    assert emu.fine.true_fine_ns == []


def test_a_board_profile_without_fine_timestamps_keeps_legacy_stamps_on_an_sx1303() -> None:
    conc, _emu, _clock = _started(MODEL_SX1303, board="corecell")
    assert not conc.fine_timestamp


def test_precision_correction_matches_the_reference_formula() -> None:
    # SF7/125 kHz, CR 4/5, 10 bytes + CRC: ceil((80+16-28+8+20)/28)·5 = 20 symbols of 1024 µs;
    # filter delay (16e6 + 2031250 + 500e3)/1e6 = 18.53 µs, truncated after subtraction
    assert precision_timestamp_correction_us(7, 125_000, 1, 10, True) == 20 * 1024 - 18 - 1


def test_metrics_mean_is_the_mean_of_the_cumulative_sum_of_the_kept_metrics() -> None:
    raw = bytes([2, 0xFE, 4, 0])  # +2, −2, +4, 0 → cumulative 2, 0, 4, 4 → mean 2.5
    assert metrics_mean(raw, 7) == 2.5
    assert metrics_mean(raw + bytes([100] * 60), 12) == pytest.approx(
        sum([2, 0, 4, 4, 104, 204, 304, 404]) / 8)  # SF12 keeps 4 pairs


def test_dc_notch_delay_only_near_the_radio_centre() -> None:
    assert dc_notch_delay_ticks(200_000) == 0.0
    assert dc_notch_delay_ticks(0) == pytest.approx(10.2922)


def test_crystal_error_scales_the_fine_time() -> None:
    stamper = FineTimestamper()
    fast = TICK_HZ + 320  # a crystal 10 ppm fast: 32,000,320 ticks per GPS second
    for k in range(1, 17):
        stamper.observe_pps(k * fast)
    # a stamp whose end of preamble is half a second of ticks after the 16th edge
    stamp = 16 * fast + 16_000_000 + preamble_offset_ticks(7, 0.0) - 2138
    result = stamper.compute(stamp, bytes(8), 7, 300_000, 0.0)
    assert result is not None
    ns, pps = result
    assert pps == 16 * fast
    assert ns == int(16_000_000 * 31.25 * TICK_HZ / fast)
