"""Topics, MQTT settings validation and the reconnect back-off."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from packet_forwarder.mqtt_link import Backoff, MqttSettings, MqttSettingsError
from packet_forwarder.topics import Topics

GW = "0016c001ff10a235"


def test_topics_with_prefix() -> None:
    t = Topics("eu868", GW)
    assert t.event("up") == f"eu868/gateway/{GW}/event/up"
    assert t.state("conn") == f"eu868/gateway/{GW}/state/conn"
    assert t.command_filter() == f"eu868/gateway/{GW}/command/+"
    assert t.command_name(f"eu868/gateway/{GW}/command/down") == "down"


def test_topics_without_prefix_have_no_leading_slash() -> None:
    t = Topics("", GW)
    assert t.event("stats") == f"gateway/{GW}/event/stats"
    assert t.command_filter() == f"gateway/{GW}/command/+"
    assert t.command_name(f"gateway/{GW}/command/config") == "config"


@pytest.mark.parametrize("topic", [
    f"us915/gateway/{GW}/command/down", "eu868/gateway/0016c001ff10a236/command/down",
    f"eu868/gateway/{GW}/command/", f"eu868/gateway/{GW}/command/down/extra",
    f"eu868/gateway/{GW}/event/up",
])
def test_foreign_topics_are_not_commands(topic: str) -> None:
    assert Topics("eu868", GW).command_name(topic) is None


@pytest.mark.parametrize(("url", "endpoint"), [
    ("mqtt://broker.local", (False, "broker.local", 1883)),
    ("mqtt://10.0.0.2:1884", (False, "10.0.0.2", 1884)),
    ("mqtts://broker.local", (True, "broker.local", 8883)),
    ("ssl://broker.local:9999", (True, "broker.local", 9999)),
])
def test_server_urls(url: str, endpoint: tuple[bool, str, int]) -> None:
    assert MqttSettings(server=url).endpoint() == endpoint


@pytest.mark.parametrize("kw", [
    {"server": "broker.local:1883"}, {"server": "http://broker"}, {"server": "mqtt://h:99999"},
    {"server": "mqtt://"}, {"max_inflight": 0}, {"max_inflight": 70_000},
    {"reconnect_min_s": 5, "reconnect_max_s": 1}, {"keepalive_s": 0},
])
def test_bad_settings_fail_early(kw: dict[str, object]) -> None:
    with pytest.raises(MqttSettingsError):
        MqttSettings(**kw)  # type: ignore[arg-type]


@given(st.integers(0, 2**32), st.floats(0.01, 5), st.floats(1, 100))
def test_backoff_grows_with_jitter_within_bounds(seed: int, lo: float, factor: float) -> None:
    hi = lo * factor
    b = Backoff(lo, hi, random.Random(seed))
    delays = [b.next_delay() for _ in range(40)]
    assert all(lo <= d <= hi for d in delays)
    assert delays[0] == lo  # first retry is quick
    assert max(delays[-5:]) >= hi / 2  # reaches the cap region
    b.reset()
    assert b.next_delay() == lo


def test_backoff_is_jittered() -> None:
    a, b = Backoff(1, 60, random.Random(1)), Backoff(1, 60, random.Random(2))
    assert [a.next_delay() for _ in range(8)] != [b.next_delay() for _ in range(8)]
