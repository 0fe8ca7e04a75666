"""The minimal board profile the SX1302 driver needs: GPIO pins, RSSI offset, TX power table.

Values come from the vendors' published reset scripts and the reference driver's
example configuration for SX1250 boards (EU868). Phase 2 moves them to
``hardware/boards/*.toml``; until then they are immutable data here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class TxGainEntry:
    """One calibrated TX power step: requested dBm → external PA on/off and SX1250 power index."""

    rf_power_dbm: int
    pa_gain: int
    pwr_idx: int


@dataclass(frozen=True, slots=True)
class BoardProfile:
    """Everything board-specific the driver uses; pins are BCM GPIO numbers (None: not wired)."""

    name: str
    reset_pin: int | None
    power_pin: int | None = None
    sx1261_reset_pin: int | None = None
    rssi_offset_db: float = -215.4
    """Added to the chip's raw RSSI byte (SX1250 reference boards)."""
    clock_source: int = 0
    """Which radio (0 = A, 1 = B) clocks the SX1302."""
    tx_gain_lut: tuple[TxGainEntry, ...] = ()

    def tx_gain_for(self, power_dbm: int) -> TxGainEntry:
        """The highest table entry not above ``power_dbm`` (the lowest one if all are above).

        This mirrors how the reference driver picks a power step: never emit more
        than asked for, except when the request is below the table's range.
        """
        if not self.tx_gain_lut:
            raise ValueError(f"board {self.name!r} has no TX power table")
        chosen = self.tx_gain_lut[0]
        for entry in self.tx_gain_lut:
            if entry.rf_power_dbm <= power_dbm:
                chosen = entry
        return chosen


SX1250_EU868_LUT: tuple[TxGainEntry, ...] = tuple(
    TxGainEntry(dbm, pa, idx)
    for dbm, pa, idx in (
        (12, 0, 15), (13, 0, 16), (14, 0, 17), (15, 0, 19), (16, 0, 20), (17, 0, 22),
        (18, 1, 1), (19, 1, 2), (20, 1, 3), (21, 1, 4), (22, 1, 5), (23, 1, 6),
        (24, 1, 7), (25, 1, 9), (26, 1, 11), (27, 1, 14),
    )
)

BOARDS: Mapping[str, BoardProfile] = MappingProxyType({
    "corecell": BoardProfile("corecell", reset_pin=23, power_pin=18, sx1261_reset_pin=22,
                             tx_gain_lut=SX1250_EU868_LUT),
    "rak2287": BoardProfile("rak2287", reset_pin=17, tx_gain_lut=SX1250_EU868_LUT),
    "rak5146": BoardProfile("rak5146", reset_pin=17, tx_gain_lut=SX1250_EU868_LUT),
    "wm1302": BoardProfile("wm1302", reset_pin=17, power_pin=18, sx1261_reset_pin=5,
                           tx_gain_lut=SX1250_EU868_LUT),
    "emulator": BoardProfile("emulator", reset_pin=None, tx_gain_lut=SX1250_EU868_LUT),
})


def get_board(name: str) -> BoardProfile:
    """The named profile; the error lists the known names so a typo in the config is obvious."""
    try:
        return BOARDS[name]
    except KeyError:
        known = ", ".join(sorted(BOARDS))
        raise ValueError(f"unknown board {name!r}; known boards: {known}") from None
