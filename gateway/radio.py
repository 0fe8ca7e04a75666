"""From the gateway's configuration to the HAL's :class:`RadioSettings`, and nothing more.

The HAL's door (:func:`hal.backends.open_radio`) takes its own small settings, not the
whole :class:`Config`: the HAL must never import the gateway.
"""

from __future__ import annotations

from typing import cast

from gateway.config import Config
from gateway.lbt_setup import lbt_settings
from hal.backends import Backend, RadioSettings
from hardware.board import get_board
from packet_forwarder.regions import load_region


def radio_settings(config: Config) -> RadioSettings:
    """The concentrator part of ``config`` (and the emulated GPS start) as the HAL takes it."""
    c = config.concentrator
    return RadioSettings(
        backend=cast(Backend, c.backend),  # the config reader allows only hal.backends.BACKENDS
        board=c.board, spi_device=c.spi_device, usb_device=c.usb_device,
        firmware_dir=c.firmware_dir, eui=bytes.fromhex(c.emulator.eui), fault=c.emulator.fault,
        gps_start_s=config.class_b.emulator_start_gps_s,
        lbt=lbt_settings(c.lbt, load_region(c.region),
                         get_board("emulator" if c.backend == "emulator" else c.board)),
        noise_floor_dbm=c.emulator.noise_floor_dbm, busy_channels=c.emulator.busy_channels,
        model=c.emulator.model)
