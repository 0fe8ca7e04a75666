"""Channel plan → radios/IF chains, IF register encoding, and LoRa timing formulas."""

from __future__ import annotations

import pytest

from hal.errors import PlanError
from hal.plan import HALF_RADIO_BAND_HZ, if_to_reg, reg_to_if, resolve_plan
from hal.timing import decoder_delay_us, time_on_air_us, tx_start_delay_ticks
from hal.types import EU868_DEFAULT_PLAN, Channel, ChannelPlan


def test_if_register_encoding_matches_the_reference_example() -> None:
    assert if_to_reg(-400_000) == 0x1CCD  # -819 as 13-bit two's complement
    assert if_to_reg(400_000) == 819
    assert reg_to_if(0x1CCD) == pytest.approx(-399_902.34, abs=0.01)


def test_eu868_plan_fits_both_radios_with_small_ifs() -> None:
    layout = resolve_plan(EU868_DEFAULT_PLAN)
    assert layout.centres_hz == (867_500_000, 868_450_000)
    assert len(layout.chains) == 10
    for c in layout.chains:
        assert abs(c.if_hz) + c.channel.bandwidth_hz // 2 <= HALF_RADIO_BAND_HZ
        assert layout.centres_hz[c.rf_chain] + c.if_hz == c.channel.frequency_hz


def test_plan_out_of_reach_names_the_channel() -> None:
    plan = ChannelPlan(multi_sf=(Channel(866_100_000), Channel(867_900_000),
                                 Channel(869_900_000)))
    with pytest.raises(PlanError, match="867900000"):
        resolve_plan(plan)


def test_explicit_centres_are_used_and_checked() -> None:
    centres = (868_000_000, 869_000_000)
    plan = ChannelPlan(multi_sf=(Channel(868_100_000),), radio_centres_hz=centres)
    assert resolve_plan(plan).chains[0].if_hz == 100_000
    bad = ChannelPlan(multi_sf=(Channel(866_000_000),), radio_centres_hz=centres)
    with pytest.raises(PlanError, match="866000000"):
        resolve_plan(bad)


@pytest.mark.parametrize("plan", [
    ChannelPlan(multi_sf=tuple(Channel(867_100_000 + 100_000 * i) for i in range(9))),
    ChannelPlan(multi_sf=(Channel(868_100_000, bandwidth_hz=250_000),)),
    ChannelPlan(multi_sf=(Channel(868_100_000, spreading_factors=(4,)),)),
    ChannelPlan(multi_sf=()),
])
def test_impossible_plans_are_refused(plan: ChannelPlan) -> None:
    with pytest.raises(PlanError):
        resolve_plan(plan)


def test_time_on_air_sf7_23_bytes() -> None:
    # 8 + 4.25 + 8 + ceil((184 + 16 - 28 + 8 + 20) / 28) * 5 = 60.25 symbols of 1024 µs
    assert time_on_air_us(7, 125_000, 1, 23) == 61_696


def test_time_on_air_sf12_uses_low_datarate_mode() -> None:
    # 8 + 4.25 + 8 + ceil((96 + 16 - 48 + 8 + 20) / (4 × (12 - 2))) × 5 = 35.25 symbols
    # of 32768 µs; without the low-data-rate mode the ceil would be over 48, not 40.
    assert time_on_air_us(12, 125_000, 1, 12) == 1_155_072


def test_decoder_delay_sf7_125k_23_bytes() -> None:
    # In 250 ns modem clocks: filtering 72.125, FFT state 3: 906, FFT with DFT peak: 677,
    # demap 139, decode 18 → 453.53 µs, truncated after adding 0.5 µs → 453.
    assert decoder_delay_us(7, 125_000, 1, 23, True) == 453


def test_decoder_delay_grows_with_sf() -> None:
    delays = [decoder_delay_us(sf, 125_000, 1, 20, True) for sf in range(5, 13)]
    assert delays == sorted(delays)


def test_tx_start_delay_125k() -> None:
    # 1500 µs × 32 − (19 radio + 504 filter (63 × 8 µs) + 64 modem) ticks
    assert tx_start_delay_ticks(125_000, 6) == 48_000 - 19 - 504 - 64
