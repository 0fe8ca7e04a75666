"""Fields of ``lora-gateway status`` that are computed rather than copied from a counter.

Kept out of the daemon so the formatter's contract (``gateway.ops_cli``) and the
values it reads are tested together without a running gateway.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from packet_forwarder.downlink.duty_cycle import BandUsage


def duty_cycle_use(usage: Iterable[BandUsage]) -> dict[str, Any]:
    """The busiest limited sub-band's share of its airtime budget, and every band's share.

    ``used_percent`` is of the allowed airtime (100 % = the sub-band is full), the
    figure a maintainer compares with the regional limit. Empty for regions without
    duty-cycle sub-bands (US915).
    """
    bands = {u.name: round(100.0 * u.load_tracked_us / u.load_max_us, 2)
             for u in usage if u.load_max_us > 0}
    if not bands:
        return {}
    return {"used_percent": max(bands.values()), "bands": bands}
