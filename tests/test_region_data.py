"""Region data files: every region loads, its facts are self-consistent, plans fit the chip."""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any

import pytest

from hal.plan import resolve_plan
from hal.types import EU868_DEFAULT_PLAN, Modulation
from packet_forwarder.regions import (
    RegionError,
    RegionPlanError,
    available_regions,
    load_region,
    parse_region,
)

REQUIRED = {"EU868", "US915", "AU915", "AS923-1", "AS923-2", "AS923-3", "AS923-4", "IN865", "KR920"}


def test_every_required_region_is_shipped() -> None:
    assert set(available_regions()) >= REQUIRED


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_region_loads_and_its_default_plan_fits_the_radios(name: str) -> None:
    region = load_region(name.lower())
    assert region.name == name
    assert "RP002" in region.source
    layout = resolve_plan(region.default_channel_plan())
    assert layout.chains
    rx2_dr = region.data_rate(region.rx2.data_rate)
    assert rx2_dr is not None and rx2_dr.downlink
    assert region.downlink_frequency_ok(region.rx2.frequency_hz)


def test_eu868_default_plan_is_the_hal_default() -> None:
    assert load_region("EU868").default_channel_plan() == EU868_DEFAULT_PLAN


def test_us915_sub_band_choice() -> None:
    us = load_region("US915")
    plan = us.default_channel_plan(sub_band=2)
    assert [c.frequency_hz for c in plan.multi_sf] == [903_900_000 + i * 200_000 for i in range(8)]
    assert plan.lora_service is not None and plan.lora_service.frequency_hz == 904_600_000
    assert plan.lora_service.bandwidth_hz == 500_000
    first = us.default_channel_plan(sub_band=1)
    assert first.multi_sf[0].frequency_hz == 902_300_000
    with pytest.raises(RegionPlanError):
        us.default_channel_plan(sub_band=9)
    with pytest.raises(RegionPlanError):
        load_region("EU868").default_channel_plan(sub_band=2)


def test_au915_default_sub_band_two() -> None:
    plan = load_region("AU915").default_channel_plan()
    assert plan.multi_sf[0].frequency_hz == 916_800_000
    assert plan.lora_service is not None and plan.lora_service.frequency_hz == 917_500_000


def test_as923_groups_are_offsets_of_group_one() -> None:
    base = load_region("AS923-1").rx2.frequency_hz
    offsets = {"AS923-2": -1_800_000, "AS923-3": -6_600_000, "AS923-4": -5_900_000}
    for name, offset in offsets.items():
        assert load_region(name).rx2.frequency_hz == base + offset


@pytest.mark.parametrize(("name", "freq", "ok"), [
    ("EU868", 869_525_000, True),
    ("EU868", 868_100_000, True),
    ("EU868", 868_650_000, True),    # between ETSI sub-bands: lrwn allows 16 dBm there
    ("EU868", 862_000_000, False),
    ("US915", 923_900_000, True),
    ("US915", 923_400_000, False),   # off the 600 kHz downlink grid
    ("US915", 902_300_000, False),   # uplink-only channel
    ("KR920", 923_300_000, True),
])
def test_downlink_frequency_plan(name: str, freq: int, ok: bool) -> None:
    assert load_region(name).downlink_frequency_ok(freq) is ok


def test_downlink_data_rates_and_payload_limits() -> None:
    us = load_region("US915")
    dr8 = us.downlink_data_rate(Modulation.LORA, spreading_factor=12, bandwidth_hz=500_000)
    assert dr8 is not None and dr8.index == 8 and dr8.max_phy_payload == 61 + 5
    assert us.downlink_data_rate(Modulation.LORA, spreading_factor=10, bandwidth_hz=125_000) is None
    eu = load_region("EU868")
    assert eu.downlink_data_rate(Modulation.FSK, bitrate_bps=50_000) is not None
    dr0 = eu.data_rate(0)
    assert dr0 is not None and dr0.max_phy_payload == 64


def test_eu868_power_limit_depends_on_sub_band() -> None:
    eu = load_region("EU868")
    assert eu.max_eirp_for(869_525_000) > eu.max_eirp_for(868_100_000)
    band = eu.sub_band_for(869_525_000)
    assert band is not None and band.duty_cycle == pytest.approx(0.10)
    band = eu.sub_band_for(868_900_000)
    assert band is not None and band.duty_cycle == pytest.approx(0.001)


def _minimal() -> dict[str, Any]:
    return {
        "name": "XX1", "common_name": "XX", "source": "test", "band_hz": [900_000_000, 901_000_000],
        "max_eirp_dbm": 14, "rx2": {"frequency_hz": 900_500_000, "data_rate": 0},
        "data_rates": [{"index": 0, "modulation": "LORA", "spreading_factor": 12,
                        "bandwidth_hz": 125_000, "max_mac_payload": 59}],
    }


def test_parse_region_accepts_a_minimal_region() -> None:
    assert parse_region(_minimal()).name == "XX1"


@pytest.mark.parametrize(("mutate", "needle"), [
    (lambda d: d["rx2"].update(data_rate=5), "rx2.data_rate"),
    (lambda d: d["rx2"].update(frequency_hz=950_000_000), "rx2.frequency_hz"),
    (lambda d: d["data_rates"][0].update(spreading_factor=13), "SF13"),
    (lambda d: d["data_rates"][0].update(max_mac_payload="big"), "max_mac_payload"),
    (lambda d: d.pop("max_eirp_dbm"), "max_eirp_dbm"),
    (lambda d: d.update(band_hz=[2, 1]), "band_hz"),
])
def test_parse_region_names_the_broken_key(mutate: Any, needle: str) -> None:
    raw = _minimal()
    mutate(raw)
    with pytest.raises((KeyError, TypeError, ValueError)) as info:
        parse_region(raw)
    assert needle in str(info.value)


def test_unknown_region_is_a_region_error() -> None:
    with pytest.raises(RegionError, match="EU868"):
        load_region("XX999")


@pytest.mark.parametrize("freq", [868_650_000, 869_300_000, 869_675_000])
def test_eu868_frequencies_between_sub_bands_allow_16_dbm(freq: int) -> None:
    eu = load_region("EU868")
    band = eu.sub_band_for(freq)
    assert band is not None and band.max_eirp_dbm == 16 and band.duty_cycle == 0.001
    assert eu.max_eirp_for(869_525_000) == 29


@pytest.mark.parametrize(("name", "up_down"), [
    ("EU868", (True, True)), ("AS923-1", (True, True)), ("AS923-4", (True, True)),
    ("IN865", (True, True)), ("KR920", (True, False)),
])
def test_sf6_sf5_are_dr12_dr13_and_stay_out_of_the_default_plan(
        name: str, up_down: tuple[bool, bool]) -> None:
    region = load_region(name)
    for index, sf in ((12, 6), (13, 5)):
        dr = region.data_rate(index)
        assert dr is not None and (dr.spreading_factor, dr.bandwidth_hz) == (sf, 125_000)
        assert (dr.uplink, dr.downlink) == up_down
    assert min(min(c.spreading_factors) for c in region.default_channel_plan().multi_sf) == 7


def test_us915_au915_sf6_500khz_downlink_is_dr14() -> None:
    for name in ("US915", "AU915"):
        dr = load_region(name).downlink_data_rate(Modulation.LORA, spreading_factor=6,
                                                  bandwidth_hz=500_000)
        assert dr is not None and dr.index == 14 and not dr.uplink


def test_au915_beacon_rfu_and_as923_2_rx2_as_chirpstack_ships_them() -> None:
    au = load_region("AU915").beacon
    assert au is not None and au.rfu1_bytes == 3
    assert load_region("AS923-2").rx2.data_rate == 0


@pytest.mark.parametrize(("name", "indexes"), [
    ("EU868", {8, 9, 10, 11}), ("US915", {5, 6}), ("AU915", {7})])
def test_lr_fhss_rates_are_receive_only_entries(name: str, indexes: set[int]) -> None:
    region = load_region(name)
    assert {r.index for r in region.lr_fhss_rates} == indexes
    assert not indexes & {d.index for d in region.data_rates}
    assert all(r.occupied_channel_width_hz in (137_000, 336_000, 1_523_000)
               for r in region.lr_fhss_rates)


def test_lr_fhss_index_clashing_with_a_data_rate_is_refused() -> None:
    raw = tomllib.loads(resources.files("packet_forwarder.regions").joinpath(
        "data", "eu868.toml").read_text(encoding="utf-8"))
    raw["lr_fhss_data_rates"][0]["index"] = 5
    with pytest.raises(ValueError, match="duplicate"):
        parse_region(raw)
