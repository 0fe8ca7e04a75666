"""``[[server]]`` sections: accepted forms, refusals naming the key, ``[mqtt]`` unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config_text

BASE = '[concentrator]\nbackend = "emulator"\n'


def load(text: str) -> object:
    return load_config_text(BASE + text, source="t.toml", base_dir=Path("/etc/lora"))


def test_mqtt_alone_is_server_default_with_no_extras() -> None:
    config = load('[mqtt]\nserver = "mqtt://b:1883"\n')
    assert config.servers == ()  # type: ignore[attr-defined]
    assert config.mqtt.route.dev_addr_prefixes == ()  # type: ignore[attr-defined]


def test_two_servers_of_both_protocols() -> None:
    config = load('''
[mqtt]
dev_addr_prefixes = ["26011000/20"]
[[server]]
name = "city"
protocol = "chirpstack_mqtt"
url = "mqtts://ns.example.org:8883"
topic_prefix = "eu868"
join_eui_prefixes = ["70b3d57ed0000000/40"]
[[server]]
name = "operator"
protocol = "semtech_udp"
url = "udp://lns.example.net:1700"
downlinks = false
keepalive_s = 5
''')
    city, operator = config.servers  # type: ignore[attr-defined]
    assert (city.name, city.protocol, city.url) == ("city", "chirpstack_mqtt",
                                                    "mqtts://ns.example.org:8883")
    assert city.mqtt is not None and city.mqtt.server == city.url and city.downlinks
    assert str(city.route.join_eui_prefixes[0]) == "70b3d57ed0000000/40"
    assert (operator.mqtt, operator.downlinks, operator.keepalive_s) == (None, False, 5.0)
    assert str(config.mqtt.route.dev_addr_prefixes[0]) == "26011000/20"  # type: ignore[attr-defined]


@pytest.mark.parametrize("text, key", [
    ('[[server]]\nname = "default"\nprotocol = "semtech_udp"\nurl = "udp://a:1"\n',
     "server[0].name"),
    ('[[server]]\nname = "a"\nprotocol = "lorawan"\nurl = "udp://a:1"\n', "server[0].protocol"),
    ('[[server]]\nname = "a"\nprotocol = "semtech_udp"\nurl = "mqtt://a:1"\n', "server[0].url"),
    ('[[server]]\nname = "a"\nprotocol = "semtech_udp"\nurl = "udp://a"\n'
     'dev_addr_prefixes = ["2601/8"]\n', "server[0].dev_addr_prefixes"),
    ('[[server]]\nname = "a"\nprotocol = "semtech_udp"\nurl = "udp://a"\ntopic = "x"\n',
     "server[0].topic"),
    ('[[server]]\nname = "a"\nprotocol = "semtech_udp"\nurl = "udp://a"\n'
     '[[server]]\nname = "a"\nprotocol = "semtech_udp"\nurl = "udp://b"\n', "server[1].name"),
])
def test_refusals_name_the_key(text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"{key.replace('[', '.').replace(']', '.')}"):
        load(text)
