"""Issue 16 point 9: what the README says about the inject socket and empty downlinks holds."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gateway.sim.inject import InjectError, parse_inject_datagram

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
FULL = {"phy_payload": "40011f2a2600010001a1b2c3d4", "frequency": 868_100_000, "sf": 7,
        "bw": 125_000, "cr": "4/5", "rssi": -57, "snr": 9.5, "crc_ok": True}


def _documented() -> tuple[list[str], list[str]]:
    found = re.search(r"((?:`\w+`, )+`\w+`(?: and `\w+`)?) are required; (.*?) are optional",
                      README, re.S)
    assert found is not None, "the README no longer says which inject fields are required"
    return re.findall(r"`(\w+)`", found.group(1)), re.findall(r"`(\w+)`", found.group(2))


@pytest.mark.parametrize("field", _documented()[0])
def test_each_documented_required_field_is_required(field: str) -> None:
    datagram = {k: v for k, v in FULL.items() if k != field}
    with pytest.raises(InjectError) as info:
        parse_inject_datagram(json.dumps(datagram).encode())
    assert info.value.reason == "missing_field"


@pytest.mark.parametrize("field", _documented()[1])
def test_each_documented_optional_field_is_optional(field: str) -> None:
    datagram = {k: v for k, v in FULL.items() if k != field}
    parse_inject_datagram(json.dumps(datagram).encode())


def test_the_readme_says_an_id_without_items_is_not_acked() -> None:
    assert "with an id but no items is not\n  acked" in README
