"""Whether this gateway listens before it talks, and with which threshold and scan window.

LBT is a board and configuration feature (``[concentrator.lbt]``): it is used when
the board has an SX1261 and the config enables it. The threshold and scan time
come from the region's rule (KR920: −65 dBm over 5 ms; AS923 in Japan: −80 dBm
over 5 ms) unless the config overrides them. Without LBT a downlink goes out
unchecked, except where the region requires LBT and the config opts in to
refusing (``refuse_without``): then the downlink checks answer TX_FREQ.
"""

from __future__ import annotations

import structlog

from gateway.config import LbtSection
from hal.lbt import LbtSettings
from hardware.board import BoardProfile
from packet_forwarder.regions.model import Region

log = structlog.get_logger(__name__)

FALLBACK_THRESHOLD_DBM = -80
FALLBACK_SCAN_US = 5000
"""For a region without an LBT rule of its own where the config still enables LBT."""


def lbt_settings(section: LbtSection, region: Region, board: BoardProfile) -> LbtSettings | None:
    """The settings to start the concentrator with, or None to send without LBT (logged)."""
    if not section.enabled:
        if region.lbt.required:
            _log_without(region, section, "disabled in [concentrator.lbt]")
        return None
    if board.lbt_radio is None:
        _log_without(region, section, f"board {board.name!r} has no SX1261")
        return None
    threshold = section.rssi_target_dbm
    if threshold is None:
        threshold = region.lbt.rssi_target_dbm or FALLBACK_THRESHOLD_DBM
    scan = section.scan_time_us or region.lbt.scan_time_us or FALLBACK_SCAN_US
    settings = LbtSettings(threshold_dbm=threshold, scan_time_us=scan)
    log.info("lbt_enabled", region=region.name, threshold_dbm=threshold, scan_time_us=scan)
    return settings


def _log_without(region: Region, section: LbtSection, why: str) -> None:
    action = ("downlinks are refused TX_FREQ" if section.refuse_without and region.lbt.required
              else "downlinks go out without listen-before-talk")
    level = log.warning if region.lbt.required else log.info
    level("lbt_not_used", region=region.name, reason=why, required=region.lbt.required,
          consequence=action)

