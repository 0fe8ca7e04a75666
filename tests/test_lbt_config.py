"""``[concentrator.lbt]``: validated once, resolved against the region's rule and the board."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, LbtSection, load_config
from gateway.lbt_setup import lbt_settings
from hardware.board import get_board
from packet_forwarder.regions import load_region
from tests.support.gateway_proc import write_config


def test_region_rule_fills_what_the_config_leaves_out() -> None:
    settings = lbt_settings(LbtSection(enabled=True), load_region("KR920"), get_board("corecell"))
    assert settings is not None
    assert (settings.threshold_dbm, settings.scan_time_us) == (-65, 5000)
    own = lbt_settings(LbtSection(enabled=True, rssi_target_dbm=-72, scan_time_us=128),
                       load_region("KR920"), get_board("corecell"))
    assert own is not None and (own.threshold_dbm, own.scan_time_us) == (-72, 128)


def test_no_lbt_on_a_board_without_sx1261_or_when_disabled() -> None:
    kr = load_region("KR920")
    assert lbt_settings(LbtSection(enabled=True), kr, get_board("rak2287")) is None
    assert lbt_settings(LbtSection(enabled=False), kr, get_board("corecell")) is None


def test_config_reads_the_section_and_the_emulated_air(tmp_path: Path) -> None:
    path = write_config(tmp_path, 1883, concentrator__lbt="enabled = true\nrefuse_without = true",
                        concentrator__emulator='busy_channels = [{frequency_hz = 922100000, '
                                               'rssi_dbm = -50.0}]')
    c = load_config(path).concentrator
    assert c.lbt == LbtSection(enabled=True, refuse_without=True)
    assert c.emulator.busy_channels == ((922_100_000, -50.0),)


def test_a_scan_time_the_sx1261_cannot_do_names_the_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, 1883, concentrator__lbt="enabled = true\nscan_time_us = 2000")
    with pytest.raises(ConfigError, match="scan_time_us"):
        load_config(path)
