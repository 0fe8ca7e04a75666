"""Driver additions of phase 2 against the emulator: model, RSSI compensation, TX abort, counter
read gaps, radios brought up, and time on air versus the reference's rule."""

from __future__ import annotations

import pytest

from hal.backends.emulated import open_emulated
from hal.bringup import radios_to_start
from hal.emulator.chip import MODEL_SX1302, MODEL_SX1303
from hal.plan import resolve_plan
from hal.sx1302 import COUNTER_WRAP_S, TxAbortError
from hal.timing import time_on_air_us
from hal.types import EU868_DEFAULT_PLAN, Channel, ChannelPlan, Modulation, TxPacket, TxTiming
from hardware.board import BOARDS


class Clock:
    def __init__(self) -> None:
        self.t = 10.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize(("otp", "model"), [(MODEL_SX1302, "SX1302"), (0x02, "SX1302"),
                                            (MODEL_SX1303, "SX1303"),
                                            (0x07, "unknown (OTP model id 0x07)")])
def test_model_is_read_from_otp(otp: int, model: str) -> None:
    conc, _ = open_emulated(model_id=otp)
    assert conc.read_model() == model
    conc.start(EU868_DEFAULT_PLAN)
    assert conc.model == model


def _received_rssi(board: str, chip_celsius: float) -> float:
    conc, emu = open_emulated(board=board)
    emu.sensor.celsius = chip_celsius
    conc.start(EU868_DEFAULT_PLAN)
    emu.inject(b"t", frequency_hz=868_100_000, sf=7, bw_hz=125_000, rssi_dbm=-80.0, snr_db=5)
    [packet] = conc.receive()
    return packet.rssi_dbm


def test_rssi_is_compensated_with_the_sensor_temperature() -> None:
    assert _received_rssi("emulator", 60.0) == pytest.approx(-80.0, abs=0.5)
    # a board without a sensor assumes 25 °C: at 60 °C its readings are off by the polynomial
    board = BOARDS["wm1302"]
    gap = board.rssi_temperature_offset_db(60.0) - board.rssi_temperature_offset_db(25.0)
    assert gap > 1.5
    assert _received_rssi("wm1302", 60.0) == pytest.approx(-80.0 - gap, abs=0.5)


def test_temperature_is_read_at_most_every_ten_seconds() -> None:
    clock = Clock()
    conc, emu = open_emulated(clock=clock)
    assert conc.temperature_c() == 25.0
    emu.sensor.celsius = 40.0
    clock.t += 5
    assert conc.temperature_c() == 25.0
    clock.t += 6
    assert conc.temperature_c() == 40.0


def test_a_failing_sensor_falls_back_to_nominal_and_is_counted() -> None:
    conc, emu = open_emulated()
    emu.sensor.absent = True
    assert conc.temperature_c() == 25.0
    assert conc.rx_errors.counts == {"temperature_read": 1}


def _tx(**kw: object) -> TxPacket:
    base: dict[str, object] = dict(payload=b"dl", frequency_hz=869_525_000, power_dbm=14,
                                   modulation=Modulation.LORA, spreading_factor=9,
                                   bandwidth_hz=125_000)
    base.update(kw)
    return TxPacket(**base)  # type: ignore[arg-type]


def test_abort_cancels_a_scheduled_tx() -> None:
    clock = Clock()
    conc, _ = open_emulated(clock=clock)
    conc.start(EU868_DEFAULT_PLAN)
    conc.send(_tx(count_us=conc.counter_us() + 2_000_000, timing=TxTiming.TIMESTAMPED))
    assert conc.tx_state().value == "scheduled"
    conc.abort_tx()
    assert conc.tx_state().value == "free"


def test_abort_of_a_stuck_tx_times_out_with_an_error() -> None:
    conc, emu = open_emulated()
    conc.start(EU868_DEFAULT_PLAN)
    emu.stuck_tx = True
    conc.send(_tx(timing=TxTiming.IMMEDIATE))
    with pytest.raises(TxAbortError, match="still reports status 0x70"):
        conc.abort_tx(0)


def test_counter_reads_further_apart_than_a_wrap_are_flagged() -> None:
    clock = Clock()
    conc, _ = open_emulated(clock=clock)
    conc.start(EU868_DEFAULT_PLAN)
    clock.t += COUNTER_WRAP_S - 1
    conc.counter_us()
    assert conc.rx_errors.counts == {}
    clock.t += COUNTER_WRAP_S + 1
    conc.counter_us()
    assert conc.rx_errors.counts == {"counter_read_gap": 1}


def test_counter_extends_across_a_27_bit_wrap_soon_after_start() -> None:
    clock = Clock()
    start_ticks = ((1 << 27) - 1_000_000) * 32  # the chip's µs count wraps one second in
    conc, emu = open_emulated(clock=clock, counter_start_ticks=start_ticks)
    conc.start(EU868_DEFAULT_PLAN)
    clock.t += 2.0
    assert conc.counter_us() == emu.counter_us() == (1 << 27) + 1_000_000


def test_the_tx_and_clock_radios_are_started_even_when_the_plan_uses_only_radio_b() -> None:
    plan = ChannelPlan(multi_sf=(Channel(868_100_000),), radio_centres_hz=(867_000_000,
                                                                          868_100_000))
    layout = resolve_plan(plan)
    assert layout.radios_used == (1,)
    assert radios_to_start(layout, BOARDS["corecell"]) == [0, 1]


@pytest.mark.parametrize(("sf", "bw", "size", "expected_us"), [
    (7, 125_000, 23, 61_696),       # the classic EU868 example
    (12, 125_000, 51, 2_465_792),   # low-data-rate mode at SF12/125
    (11, 125_000, 10, 577_536),     # and at SF11/125: 35.25 symbols of 16.384 ms
    (10, 500_000, 20, 92_672),      # 45.25 symbols of 2.048 ms
])
def test_time_on_air_agrees_with_the_reference_where_its_rule_and_the_modem_agree(
        sf: int, bw: int, size: int, expected_us: int) -> None:
    assert time_on_air_us(sf, bw, 1, size) == expected_us


def test_time_on_air_follows_the_modems_ldro_setting_at_500_khz() -> None:
    """The reference's lgw_time_on_air assumes LDRO for SF11/12 at every bandwidth, but its TX
    path enables LDRO only at 125 kHz (and SF12/250): SF12/500 frames are shorter than it says.
    We follow what the chip transmits."""
    symbol_us = 4096 * 8 // 4
    bits = 8 * 23 + 16 - 48 + 8 + 20  # 180 payload bits
    without_ldro = (8 + 4.25 + 8 + -(-bits // 48) * 5) * symbol_us  # 4 blocks
    with_ldro = (8 + 4.25 + 8 + -(-bits // 40) * 5) * symbol_us  # 5 blocks: the reference's figure
    assert time_on_air_us(12, 500_000, 1, 23) == without_ldro < with_ldro
