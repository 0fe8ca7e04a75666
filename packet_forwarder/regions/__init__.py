"""LoRaWAN regional rules, kept as data files (``data/<region>.toml``) with a typed loader."""

from packet_forwarder.regions.loader import (
    RegionError,
    available_regions,
    check_region,
    load_region,
    parse_region,
)
from packet_forwarder.regions.model import (
    BeaconSpec,
    DataRate,
    FrequencyGrid,
    Lbt,
    Region,
    RegionPlanError,
    Rx2,
    SubBand,
)

__all__ = [
    "BeaconSpec",
    "DataRate",
    "FrequencyGrid",
    "Lbt",
    "Region",
    "RegionError",
    "RegionPlanError",
    "Rx2",
    "SubBand",
    "available_regions",
    "check_region",
    "load_region",
    "parse_region",
]
