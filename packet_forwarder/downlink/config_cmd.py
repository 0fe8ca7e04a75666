"""``command/config``: a ``GatewayConfiguration`` from ChirpStack turned into a channel plan.

The server sends its region's channel plan when the gateway reports another config
version. The plan is checked here against the region (frequencies in the band) and
against the concentrator (at most 8 multi-SF channels, one LoRa service channel,
one FSK channel, all within reach of the two radios); a plan the hardware cannot
receive is refused with a reason, and the running plan stays. Persisting the
accepted plan is the daemon's job; :func:`plan_to_dict` / :func:`plan_from_dict`
give it a JSON-friendly form.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chirpstack_api.gw import gw_pb2

from hal.types import Channel, ChannelPlan, Modulation
from packet_forwarder.chirpstack import MessageDecodeError, unmarshal
from packet_forwarder.regions.model import Region

MULTI_SF_BANDWIDTH_HZ = 125_000
MAX_MULTI_SF = 8
MAX_VERSION_LEN = 64
"""ChirpStack's config versions are short hashes; a longer one would be copied into the
plan file, a log line and every stats message."""
FSK_MAX_BANDWIDTH_HZ = 500_000


@dataclass(frozen=True, slots=True)
class ConfigResult:
    """An accepted plan (``plan`` set) or a refusal (``error`` set); version as sent."""

    version: str
    plan: ChannelPlan | None
    stats_interval_s: float | None = None
    error: str | None = None


class ConfigRefused(ValueError):
    pass


def _bandwidth(cfg: Any) -> int:
    """New field in Hz, or the legacy field in kHz."""
    return int(cfg.bandwidth) or int(cfg.bandwidth_legacy) * 1000


def _channel(ch: gw_pb2.ChannelConfiguration) -> Channel:
    if ch.HasField("lora_modulation_config"):
        lora = ch.lora_modulation_config
        sfs = tuple(sorted(set(lora.spreading_factors)))
        if not sfs or any(not 5 <= sf <= 12 for sf in sfs):
            raise ConfigRefused(f"{ch.frequency} Hz: spreading factors {list(sfs)}")
        return Channel(ch.frequency, _bandwidth(lora), sfs)
    if ch.HasField("fsk_modulation_config"):
        fsk = ch.fsk_modulation_config
        if fsk.bitrate <= 0:
            raise ConfigRefused(f"{ch.frequency} Hz: FSK without a bit rate")
        return Channel(ch.frequency, _bandwidth(fsk), (), Modulation.FSK, fsk.bitrate)
    raise ConfigRefused(f"{ch.frequency} Hz: no modulation")


PlanCheck = Callable[[ChannelPlan], "str | None"]
"""The concentrator's answer to "can you receive this plan?": None, or why not."""


def _check_region_rates(channel: Channel, region: Region) -> None:
    """Every modulation a channel listens for is one of the region's uplink data rates:
    a plan of rates no device may use would leave the gateway deaf."""
    rates = [d for d in region.data_rates if d.uplink and d.modulation is channel.modulation]
    where = f"{channel.frequency_hz} Hz"
    if channel.modulation is Modulation.FSK:
        if not 0 < channel.bandwidth_hz <= FSK_MAX_BANDWIDTH_HZ:
            raise ConfigRefused(f"{where}: FSK bandwidth {channel.bandwidth_hz} Hz")
        if all(d.bitrate_bps != channel.datarate_bps for d in rates):
            raise ConfigRefused(f"{where}: FSK {channel.datarate_bps} bit/s is not a "
                                f"{region.name} uplink data rate")
        return
    allowed = {d.spreading_factor for d in rates if d.bandwidth_hz == channel.bandwidth_hz}
    if not allowed or not set(channel.spreading_factors) <= allowed:
        raise ConfigRefused(f"{where}: SF{list(channel.spreading_factors)} at "
                            f"{channel.bandwidth_hz} Hz not {region.name} uplink data rates")


def build_plan(config: gw_pb2.GatewayConfiguration, region: Region, fits: PlanCheck) -> ChannelPlan:
    """The plan ``config`` describes; raises :class:`ConfigRefused` naming what does not fit."""
    multi: list[Channel] = []
    service: list[Channel] = []
    fsk: list[Channel] = []
    low, high = region.band_hz
    for ch in config.channels:
        channel = _channel(ch)
        if not low <= channel.frequency_hz <= high:
            raise ConfigRefused(f"{channel.frequency_hz} Hz outside {region.name}")
        _check_region_rates(channel, region)
        if channel.modulation is Modulation.FSK:
            fsk.append(channel)
        elif channel.bandwidth_hz == MULTI_SF_BANDWIDTH_HZ and len(channel.spreading_factors) > 1:
            multi.append(channel)
        else:
            service.append(channel)
    if len(multi) > MAX_MULTI_SF or len(service) > 1 or len(fsk) > 1:
        raise ConfigRefused(f"{len(multi)} multi-SF, {len(service)} single-SF LoRa and "
                            f"{len(fsk)} FSK channels; the SX1302 has 8, 1 and 1")
    if not multi:
        raise ConfigRefused("no LoRa multi-SF channel: the gateway would not hear devices")
    plan = ChannelPlan(tuple(multi), service[0] if service else None, fsk[0] if fsk else None)
    problem = fits(plan)
    if problem is not None:
        raise ConfigRefused(f"the radios cannot receive this plan: {problem}")
    return plan


def parse_gateway_configuration(payload: bytes, region: Region, gateway_id: str,
                                fits: PlanCheck) -> ConfigResult:
    """Decode and check one ``command/config`` payload; never raises.

    ``fits`` is the concentrator's own check (``Concentrator.check_plan``): the radio
    constraints (IF ranges, radio centres) are the chip's knowledge, not the protocol's.
    """
    try:
        config = unmarshal(payload, gw_pb2.GatewayConfiguration)
    except MessageDecodeError as exc:
        return ConfigResult("", None, error=str(exc))
    interval = config.stats_interval
    stats_s = interval.seconds + interval.nanos / 1e9 if config.HasField("stats_interval") else None
    if config.gateway_id and config.gateway_id.lower() != gateway_id.lower():
        return ConfigResult(config.version[:MAX_VERSION_LEN], None, stats_s,
                            f"gateway_id {config.gateway_id[:32]} is not ours")
    version = config.version
    if len(version) > MAX_VERSION_LEN or not version.isprintable():
        return ConfigResult(version[:MAX_VERSION_LEN].encode("unicode_escape").decode(), None,
                            stats_s, f"version of {len(version)} characters is not at most "
                                     f"{MAX_VERSION_LEN} printable ones")
    try:
        plan = build_plan(config, region, fits)
    except ConfigRefused as exc:
        return ConfigResult(version, None, stats_s, str(exc))
    return ConfigResult(version, plan, stats_s)


def _channel_dict(c: Channel) -> dict[str, Any]:
    return {"frequency_hz": c.frequency_hz, "bandwidth_hz": c.bandwidth_hz,
            "spreading_factors": list(c.spreading_factors), "modulation": c.modulation.value,
            "datarate_bps": c.datarate_bps}


def _channel_from(d: dict[str, Any]) -> Channel:
    return Channel(int(d["frequency_hz"]), int(d["bandwidth_hz"]),
                   tuple(int(x) for x in d["spreading_factors"]), Modulation(d["modulation"]),
                   int(d["datarate_bps"]))


def plan_to_dict(plan: ChannelPlan, version: str) -> dict[str, Any]:
    """A JSON-serialisable form of an accepted plan and its config version, for persisting."""
    return {"version": version,
            "multi_sf": [_channel_dict(c) for c in plan.multi_sf],
            "lora_service": None if plan.lora_service is None else _channel_dict(plan.lora_service),
            "fsk": None if plan.fsk is None else _channel_dict(plan.fsk)}


def plan_from_dict(d: dict[str, Any]) -> tuple[ChannelPlan, str]:
    """Inverse of :func:`plan_to_dict`; raises ``KeyError``/``ValueError``/``TypeError``."""
    service, fsk = d.get("lora_service"), d.get("fsk")
    plan = ChannelPlan(tuple(_channel_from(c) for c in d["multi_sf"]),
                       None if service is None else _channel_from(service),
                       None if fsk is None else _channel_from(fsk))
    return plan, str(d["version"])
