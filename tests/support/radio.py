"""The concentrator's channel-plan check, for protocol tests that run without a radio."""

from __future__ import annotations

from hal.backends.emulated import open_emulated
from hal.types import ChannelPlan

_CONCENTRATOR, _CHIP = open_emulated()


def radio_fits(plan: ChannelPlan) -> str | None:
    """What ``Concentrator.check_plan`` of the emulated SX1302 answers (pure, no SPI)."""
    return _CONCENTRATOR.check_plan(plan)
