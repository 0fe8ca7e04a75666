"""command/config → ChannelPlan, refusals with reasons; beacon frames; TX stats."""

from __future__ import annotations

import binascii
import json
import struct

import pytest
from chirpstack_api.gw import gw_pb2

from hal.types import EU868_DEFAULT_PLAN, ChannelPlan
from packet_forwarder.chirpstack import JSON, PROTOBUF, marshal
from packet_forwarder.downlink.beacon import BeaconInfo, beacon_frame, beacon_packet
from packet_forwarder.downlink.config_cmd import (
    parse_gateway_configuration,
    plan_from_dict,
    plan_to_dict,
)
from packet_forwarder.downlink.duty_cycle import DutyCycle
from packet_forwarder.downlink.handler import DownlinkCounters
from packet_forwarder.downlink.stats import fill_tx_stats
from packet_forwarder.regions import load_region
from tests.support.radio import radio_fits

GW = "0016c001ff10a235"
EU = load_region("EU868")


def config_for(plan: ChannelPlan, version: str = "cfg-1") -> gw_pb2.GatewayConfiguration:
    cfg = gw_pb2.GatewayConfiguration(gateway_id=GW, version=version)
    cfg.stats_interval.FromSeconds(30)
    for c in plan.multi_sf + ((plan.lora_service,) if plan.lora_service else ()):
        ch = cfg.channels.add(frequency=c.frequency_hz)
        ch.lora_modulation_config.bandwidth = c.bandwidth_hz
        ch.lora_modulation_config.spreading_factors.extend(c.spreading_factors)
    if plan.fsk is not None:
        ch = cfg.channels.add(frequency=plan.fsk.frequency_hz)
        ch.fsk_modulation_config.bandwidth = plan.fsk.bandwidth_hz
        ch.fsk_modulation_config.bitrate = plan.fsk.datarate_bps
    return cfg


@pytest.mark.parametrize("marshaler", [PROTOBUF, JSON])
def test_eu868_plan_round_trips(marshaler: str) -> None:
    payload = marshal(config_for(EU868_DEFAULT_PLAN), marshaler)
    result = parse_gateway_configuration(payload, EU, GW, fits=radio_fits)
    assert result.error is None
    assert result.plan == EU868_DEFAULT_PLAN
    assert result.version == "cfg-1" and result.stats_interval_s == 30
    assert plan_from_dict(plan_to_dict(result.plan, "cfg-1")) == (EU868_DEFAULT_PLAN, "cfg-1")


def test_legacy_bandwidth_in_khz() -> None:
    cfg = gw_pb2.GatewayConfiguration(gateway_id=GW, version="x")
    ch = cfg.channels.add(frequency=868_100_000)
    ch.lora_modulation_config.bandwidth_legacy = 125
    ch.lora_modulation_config.spreading_factors.extend([7, 8, 9, 10, 11, 12])
    result = parse_gateway_configuration(cfg.SerializeToString(), EU, GW, fits=radio_fits)
    assert result.plan is not None and result.plan.multi_sf[0].bandwidth_hz == 125_000


def _refusal(cfg: gw_pb2.GatewayConfiguration) -> str:
    result = parse_gateway_configuration(cfg.SerializeToString(), EU, GW, fits=radio_fits)
    assert result.plan is None and result.error is not None
    return result.error


def test_too_many_channels_refused() -> None:
    cfg = config_for(EU868_DEFAULT_PLAN)
    ch = cfg.channels.add(frequency=868_700_000)
    ch.lora_modulation_config.bandwidth = 125_000
    ch.lora_modulation_config.spreading_factors.extend([7, 8])
    assert "9 multi-SF" in _refusal(cfg)


def test_out_of_band_refused() -> None:
    cfg = config_for(EU868_DEFAULT_PLAN)
    cfg.channels[0].frequency = 902_300_000
    assert "outside EU868" in _refusal(cfg)


def test_plan_the_radios_cannot_cover_refused() -> None:
    cfg = gw_pb2.GatewayConfiguration(gateway_id=GW, version="x")
    for f in (863_100_000, 866_000_000, 869_900_000):
        ch = cfg.channels.add(frequency=f)
        ch.lora_modulation_config.bandwidth = 125_000
        ch.lora_modulation_config.spreading_factors.extend([7, 8, 9])
    assert "radios" in _refusal(cfg)


def test_other_gateway_refused() -> None:
    cfg = config_for(EU868_DEFAULT_PLAN)
    cfg.gateway_id = "0000000000000001"
    assert "not ours" in _refusal(cfg)


def test_eu868_beacon_frame_layout() -> None:
    spec = EU.beacon
    assert spec is not None
    t = 1_400_000_000 - 1_400_000_000 % 128
    frame = beacon_frame(spec, t, BeaconInfo(latitude=45.0, longitude=-90.0))
    assert len(frame) == 17
    assert frame[:2] == b"\x00\x00" and struct.unpack("<I", frame[2:6])[0] == t
    assert frame[6:8] == struct.pack("<H", binascii.crc_hqx(frame[:6], 0))
    assert frame[8] == 0
    assert int.from_bytes(frame[9:12], "little", signed=True) == 1 << 22     # 45° of 90°
    assert int.from_bytes(frame[12:15], "little", signed=True) == -(1 << 22)  # -90° of 180°
    assert frame[15:17] == struct.pack("<H", binascii.crc_hqx(frame[8:15], 0))


def test_us915_beacon_hops_and_is_longer() -> None:
    us = load_region("US915")
    assert us.beacon is not None
    freqs = {beacon_packet(us, k * 128, 0, 20, BeaconInfo())[0].frequency_hz for k in range(8)}
    assert freqs == set(us.beacon.channels.frequencies())
    packet, toa = beacon_packet(us, 128, 0, 20, BeaconInfo())
    assert len(packet.payload) == 23 and not packet.invert_polarity and toa == 305_152


def test_fill_tx_stats() -> None:
    counters = DownlinkCounters(received=3, emitted=2)
    counters.per_status.update({"OK": 2, "TOO_LATE": 1})
    counters.per_frequency.update({868_100_000: 2})
    counters.per_modulation.update({("LORA", 7, 125_000, 0, "4/5"): 2})
    counters.power_clamped = 4
    dc = DutyCycle(EU, lambda: 0.0)
    dc.record(869_525_000, 1_000_000)
    stats = gw_pb2.GatewayStats(gateway_id=GW)
    fill_tx_stats(stats, counters, dc, EU)
    assert stats.tx_packets_received == 3 and stats.tx_packets_emitted == 2
    assert dict(stats.tx_packets_per_status) == {"OK": 2, "TOO_LATE": 1}
    assert stats.tx_packets_per_modulation[0].modulation.lora.spreading_factor == 7
    # without the code rate ChirpStack's get_data_rate_index finds no data rate
    assert stats.tx_packets_per_modulation[0].modulation.lora.code_rate == gw_pb2.CodeRate.CR_4_5
    assert stats.metadata["tx_power_clamped"] == "4"
    bands = {b.name: b for b in stats.duty_cycle_stats.bands}
    assert bands["869.4-869.65"].load_tracked.ToMicroseconds() == 1_000_000
    assert bands["869.4-869.65"].load_max.ToMicroseconds() == 360_000_000
    assert stats.duty_cycle_stats.window.ToSeconds() == 3600


def test_unknown_json_fields_in_command_config_are_ignored() -> None:
    doc = json.loads(marshal(config_for(EU868_DEFAULT_PLAN, "cfg-future"), JSON))
    doc["futureTopLevel"] = 1
    for ch in doc["channels"]:
        ch["futureChannelField"] = {"x": [1, 2]}
    result = parse_gateway_configuration(json.dumps(doc).encode(), EU, GW, fits=radio_fits)
    assert result.error is None and result.version == "cfg-future"
    assert result.plan == EU868_DEFAULT_PLAN
