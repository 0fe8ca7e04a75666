"""Issue 16 point 3: channel plans the region and the radio cannot sensibly run are
refused, the version string is bounded, and what is applied is what is saved."""

from __future__ import annotations

import asyncio
import json

import pytest
import structlog
from chirpstack_api.gw import gw_pb2

from gateway.config import Config
from gateway.sim.local_broker import LocalBroker
from packet_forwarder.downlink.config_cmd import MAX_VERSION_LEN, parse_gateway_configuration
from packet_forwarder.regions import load_region
from tests.support.gateway_proc import NetworkServerStandIn
from tests.support.inprocess import (
    GW,
    NEW_PLAN_HZ,
    broker,  # noqa: F401  (fixture)
    channels,
    config,  # noqa: F401  (fixture)
    configuration,
    running,
    until,
    uplink,
)
from tests.support.radio import radio_fits

pytestmark = pytest.mark.usefixtures("mosquitto_binary")

EU = load_region("EU868")


def fsk_only(bitrate: int = 1, bandwidth: int = 0) -> bytes:
    cfg = gw_pb2.GatewayConfiguration(gateway_id=GW, version="fsk-only")
    ch = cfg.channels.add(frequency=868_800_000)
    ch.fsk_modulation_config.bitrate = bitrate
    ch.fsk_modulation_config.bandwidth = bandwidth
    return cfg.SerializeToString()


def with_channel(frequency: int, bandwidth: int, sfs: list[int]) -> bytes:
    cfg = gw_pb2.GatewayConfiguration.FromString(configuration("v", NEW_PLAN_HZ[:3]))
    ch = cfg.channels.add(frequency=frequency)
    ch.lora_modulation_config.bandwidth = bandwidth
    ch.lora_modulation_config.spreading_factors.extend(sfs)
    return cfg.SerializeToString()


PLAN_SEEDS: dict[str, tuple[bytes, str]] = {
    "fsk_only_1bps_0hz": (fsk_only(), "FSK bandwidth"),
    "fsk_only_good_rate": (fsk_only(50_000, 125_000), "no LoRa multi-SF"),
    # SF5/SF6 are EU868 uplink data rates at 125 kHz since RP002-1.0.5 (DR12/13), not at 250
    "lora_sf5_250khz_eu868": (with_channel(868_100_000, 250_000, [5, 6]), "uplink data rates"),
    "lora_bw_7khz": (with_channel(868_100_000, 7_000, [7]), "uplink data rates"),
    "version_1mb": (configuration("v" * 1_000_000, NEW_PLAN_HZ), "version of 1000000"),
    "version_control_chars": (configuration("v2\n\x1b[31m", NEW_PLAN_HZ), "printable"),
}


@pytest.mark.parametrize("name", sorted(PLAN_SEEDS))
def test_plan_is_refused_with_a_reason(name: str) -> None:
    payload, reason = PLAN_SEEDS[name]
    result = parse_gateway_configuration(payload, EU, GW, fits=radio_fits)
    assert result.plan is None and result.error is not None and reason in result.error
    assert len(result.version) <= 4 * MAX_VERSION_LEN and "\n" not in result.version


def test_the_default_eu868_style_plan_is_accepted() -> None:
    payload = configuration("v2", NEW_PLAN_HZ)
    assert parse_gateway_configuration(payload, EU, GW, fits=radio_fits).plan


def test_daemon_refuses_absurd_plans_and_saves_what_it_applies(
        config: Config, broker: LocalBroker) -> None:
    plan_file = config.buffer.path.parent / "channel-plan.json"

    async def scenario() -> None:
        ns = NetworkServerStandIn(broker.port)
        try:
            with structlog.testing.capture_logs() as logs:
                async with running(config, ns) as daemon:
                    before = channels(daemon)
                    for payload, _ in PLAN_SEEDS.values():
                        await asyncio.to_thread(ns.command, "config", payload)
                    await until(lambda: sum(e["event"] == "config_refused"
                                             for e in logs) == len(PLAN_SEEDS))
                    assert channels(daemon) == before
                    assert not plan_file.exists()
                    await uplink(daemon, ns)                     # still hears LoRa
                    await asyncio.to_thread(ns.command, "config",
                                            configuration("v2", NEW_PLAN_HZ))
                    await until(lambda: channels(daemon) == set(NEW_PLAN_HZ))
                    other = NEW_PLAN_HZ[:4]                      # new plan, same version
                    await asyncio.to_thread(ns.command, "config", configuration("v2", other))
                    await until(lambda: channels(daemon) == set(other))
                    await until(lambda: len(json.loads(plan_file.read_text())["multi_sf"])
                                 == len(other))
        finally:
            ns.close()
        refused = [e for e in logs if e["event"] == "config_refused"]
        assert all(len(str(e)) < 2_000 for e in refused)

        ns = NetworkServerStandIn(broker.port)
        try:
            async with running(config, ns) as daemon:            # restart: the saved plan
                assert channels(daemon) == set(NEW_PLAN_HZ[:4])
        finally:
            ns.close()

    asyncio.run(scenario())
