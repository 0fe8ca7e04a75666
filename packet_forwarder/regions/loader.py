"""Load and validate the region data files shipped in ``data/``.

A data file is checked once, at load, so a typo in a frequency or a data-rate
table fails the start with a message naming the file and the key, instead of
refusing downlinks later for an unclear reason.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from hal.types import Modulation
from packet_forwarder.regions.model import (
    BeaconSpec,
    DataRate,
    FrequencyGrid,
    FskChannel,
    Lbt,
    LrFhssRate,
    Region,
    Rx2,
    ServiceChannel,
    SubBand,
    UplinkPlan,
)

T = TypeVar("T")
_DATA = Path(__file__).resolve().parent / "data"
"""On disk next to this module (as ``hardware/boards``): not ``importlib.resources``,
whose readers bring tempfile, zipfile and shutil into the daemon for good."""
_LORA_BANDWIDTHS = (125_000, 250_000, 500_000)
_LR_FHSS_CODE_RATES = ("1/3", "2/3", "2/6", "4/6")


class RegionError(ValueError):
    """A region that does not exist, or a data file that breaks the schema."""


def _file_name(name: str) -> str:
    return name.strip().lower() + ".toml"


def available_regions() -> list[str]:
    """Region names as written in the data files (``EU868``, ``AS923-1`` ...), sorted."""
    names = []
    for entry in _DATA.iterdir():
        if entry.name.endswith(".toml"):
            names.append(entry.name.removesuffix(".toml").upper())
    return sorted(names)


def load_region(name: str) -> Region:
    """Read and validate one region's data file; raises :class:`RegionError`."""
    entry = _DATA / _file_name(name)
    if not entry.is_file():
        raise RegionError(f"unknown region {name!r}; known: {', '.join(available_regions())}")
    try:
        raw = tomllib.loads(entry.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise RegionError(f"{entry.name}: {exc}") from exc
    try:
        region = parse_region(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise RegionError(f"{entry.name}: {exc}") from exc
    if region.name.upper() != name.strip().upper():
        raise RegionError(f"{entry.name}: name {region.name!r} does not match the file")
    return region


def _get(table: Mapping[str, Any], key: str, kind: type[T], where: str) -> T:
    if key not in table:
        raise KeyError(f"{where}{key} is missing")
    value = table[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"{where}{key} must be {kind.__name__}, not {type(value).__name__}")
    return value


def _opt(table: Mapping[str, Any], key: str, parse: Callable[[Mapping[str, Any]], T]) -> T | None:
    return parse(table[key]) if key in table else None


def _grid(t: Mapping[str, Any]) -> FrequencyGrid:
    grid = FrequencyGrid(_get(t, "first_hz", int, ""), _get(t, "step_hz", int, ""),
                         _get(t, "count", int, ""))
    if grid.count < 1 or grid.step_hz < 0:
        raise ValueError(f"bad frequency grid {grid}")
    return grid


def _data_rate(t: Mapping[str, Any]) -> DataRate:
    where = f"data_rates[{t.get('index')}]."
    modulation = Modulation(_get(t, "modulation", str, where))
    direction = t.get("direction", "both")
    if direction not in ("up", "down", "both"):
        raise ValueError(f"{where}direction must be up, down or both")
    if modulation is Modulation.LORA:
        sf, bw, rate = (_get(t, "spreading_factor", int, where),
                        _get(t, "bandwidth_hz", int, where), 0)
        if not 5 <= sf <= 12 or bw not in _LORA_BANDWIDTHS:
            raise ValueError(f"{where} SF{sf}/{bw} Hz is not a LoRa modulation")
    else:
        sf, bw, rate = 0, 0, _get(t, "bitrate_bps", int, where)
    payload = _get(t, "max_mac_payload", int, where)
    if not 0 < payload <= 250:
        raise ValueError(f"{where}max_mac_payload {payload} outside 1..250")
    return DataRate(_get(t, "index", int, where), modulation, sf, bw, rate, payload,
                    uplink=direction != "down", downlink=direction != "up")


def _sub_band(t: Mapping[str, Any]) -> SubBand:
    where = f"sub_bands[{t.get('name')}]."
    percent = t.get("duty_cycle_percent")
    if percent is not None and not (isinstance(percent, int | float) and 0 < percent <= 100):
        raise ValueError(f"{where}duty_cycle_percent must be in (0, 100]")
    return SubBand(_get(t, "name", str, where), _get(t, "min_hz", int, where),
                   _get(t, "max_hz", int, where),
                   None if percent is None else float(percent) / 100,
                   _get(t, "max_eirp_dbm", float, where))


def _uplink_plan(uplink: Mapping[str, Any], plan: Mapping[str, Any]) -> UplinkPlan:
    service = _opt(plan, "service", lambda s: ServiceChannel(
        _get(s, "frequency_hz", int, "service."), _get(s, "bandwidth_hz", int, "service."),
        _get(s, "spreading_factor", int, "service.")))
    fsk = _opt(plan, "fsk", lambda s: FskChannel(
        _get(s, "frequency_hz", int, "fsk."), _get(s, "bandwidth_hz", int, "fsk."),
        _get(s, "bitrate_bps", int, "fsk.")))
    return UplinkPlan(
        multi_sf_hz=tuple(plan.get("multi_sf_hz", ())), service=service, fsk=fsk,
        grid_125khz=_opt(uplink, "grid_125khz", _grid),
        grid_500khz=_opt(uplink, "grid_500khz", _grid),
        default_sub_band=int(uplink.get("default_sub_band", 1)))


def _beacon(t: Mapping[str, Any]) -> BeaconSpec:
    channels = FrequencyGrid(_get(t, "frequency_hz", int, "beacon."),
                             int(t.get("step_hz", 0)), int(t.get("count", 1)))
    return BeaconSpec(_get(t, "data_rate", int, "beacon."), channels,
                      _get(t, "rfu1_bytes", int, "beacon."), _get(t, "rfu2_bytes", int, "beacon."))


def _lr_fhss(t: Mapping[str, Any]) -> LrFhssRate:
    where = f"lr_fhss_data_rates[{t.get('index')}]."
    rate = LrFhssRate(_get(t, "index", int, where), _get(t, "coding_rate", str, where),
                      _get(t, "occupied_channel_width_hz", int, where))
    if rate.coding_rate not in _LR_FHSS_CODE_RATES or rate.occupied_channel_width_hz <= 0:
        raise ValueError(f"{where} coding rate {rate.coding_rate!r} / width "
                         f"{rate.occupied_channel_width_hz} Hz is not an LR-FHSS data rate")
    return rate


def parse_region(raw: Mapping[str, Any]) -> Region:
    """Build a :class:`Region` from a parsed data file and check it is self-consistent."""
    band = raw["band_hz"]
    if not (isinstance(band, list) and len(band) == 2 and band[0] < band[1]):
        raise ValueError("band_hz must be [low, high]")
    rx2 = _get(raw, "rx2", dict, "")
    lbt = raw.get("lbt", {})
    region = Region(
        name=_get(raw, "name", str, ""), common_name=_get(raw, "common_name", str, ""),
        source=_get(raw, "source", str, ""), regulation=str(raw.get("regulation", "")),
        band_hz=(int(band[0]), int(band[1])), max_eirp_dbm=_get(raw, "max_eirp_dbm", float, ""),
        duty_cycle_window_s=int(raw.get("duty_cycle_window_s", 3600)),
        data_rates=tuple(_data_rate(d) for d in raw["data_rates"]),
        sub_bands=tuple(_sub_band(s) for s in raw.get("sub_bands", ())),
        default_uplink_hz=tuple(raw.get("uplink", {}).get("default_channels_hz", ())),
        uplink_plan=_uplink_plan(raw.get("uplink", {}), raw.get("default_plan", {})),
        downlink_grid=_opt(raw.get("downlink", {}), "grid", _grid),
        rx2=Rx2(_get(rx2, "frequency_hz", int, "rx2."), _get(rx2, "data_rate", int, "rx2.")),
        lbt=Lbt(bool(lbt.get("required", False)), lbt.get("rssi_target_dbm"),
                lbt.get("scan_time_us")),
        beacon=_opt(raw, "beacon", _beacon),
        lr_fhss_rates=tuple(_lr_fhss(d) for d in raw.get("lr_fhss_data_rates", ())),
    )
    check_region(region)
    return region


def check_region(region: Region) -> None:
    """Cross-field checks: every referenced data rate exists, every frequency is in the band."""
    indexes = [d.index for d in region.data_rates] + [d.index for d in region.lr_fhss_rates]
    if len(set(indexes)) != len(indexes):
        raise ValueError("data_rates and lr_fhss_data_rates have duplicate indexes")
    low, high = region.band_hz
    in_band = [("rx2.frequency_hz", region.rx2.frequency_hz)]
    in_band += [("uplink.default_channels_hz", f) for f in region.default_uplink_hz]
    in_band += [("default_plan.multi_sf_hz", f) for f in region.uplink_plan.multi_sf_hz]
    for key, freq in in_band:
        if not low <= freq <= high:
            raise ValueError(f"{key} {freq} outside band {low}..{high}")
    rx2_dr = region.data_rate(region.rx2.data_rate)
    if rx2_dr is None or not rx2_dr.downlink:
        raise ValueError(f"rx2.data_rate {region.rx2.data_rate} is not a downlink data rate")
    if not region.downlink_frequency_ok(region.rx2.frequency_hz):
        raise ValueError("rx2.frequency_hz is not a downlink frequency of the region")
    if region.beacon is not None:
        beacon_dr = region.data_rate(region.beacon.data_rate)
        if beacon_dr is None or beacon_dr.modulation is not Modulation.LORA:
            raise ValueError(f"beacon.data_rate {region.beacon.data_rate} is not a LoRa rate")
        for f in region.beacon.channels.frequencies():
            if not region.downlink_frequency_ok(f):
                raise ValueError(f"beacon frequency {f} is not a downlink frequency")
    for s in region.sub_bands:
        if not low <= s.min_hz < s.max_hz <= high:
            raise ValueError(f"sub_bands[{s.name}] outside band {low}..{high}")
    if len(region.uplink_plan.multi_sf_hz) > 8:
        raise ValueError("default_plan.multi_sf_hz holds more than 8 channels")
