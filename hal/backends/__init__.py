"""The one door to the radio: ``open_radio(settings)`` returns everything above the HAL needs.

Callers (the daemon, ``doctor``, ``provision``) name a backend in a small
:class:`RadioSettings` and get a :class:`Radio` back: the concentrator behind the
:class:`~hal.interface.Concentrator` protocol, the board profile, a way to open the
board's GPS receiver, the sleep that matches the concentrator's clock, and — only for
the emulator — the emulated chip, which only the simulator wing reads.

Backends are registered here by name and imported only when chosen (as python-can's
``BACKENDS`` table does), so the emulator and the hardware libraries stay out of a
process that does not ask for them. A new backend is one opener module and one line in
:data:`_OPENERS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

from hal.gps_time import GpsReader
from hal.interface import Concentrator
from hal.lbt import LbtSettings
from hardware.board import BoardProfile

if TYPE_CHECKING:
    from hal.doctor_checks import HalCheck
    from hal.emulator.chip import Sx1302Emulator
    from hal.sx1261 import Sx1261
    from hal.types import ChannelPlan

Backend = Literal["sx1302", "sx1302_usb", "emulator"]
BACKENDS: tuple[str, ...] = get_args(Backend)
Purpose = Literal["run", "inspect"]
"""``run``: the daemon (firmware loaded, real time); ``inspect``: doctor and provision
(no firmware needed, the emulator on a stepping clock so checks do not wait)."""

EMULATED_DEVICE = "emulator"
"""``spi_device``/``usb_device`` value that puts the emulated chip behind a real board's
profile (or behind the emulated USB MCU), for doctor's and provision's tests."""

GpsOpener = Callable[[], GpsReader]


@dataclass(frozen=True, slots=True)
class RadioSettings:
    """What opening a radio needs: filled in from the gateway config, never the whole config."""

    backend: Backend
    board: str = "corecell"
    spi_device: str | None = None
    """None: the board profile's device."""
    usb_device: str | None = None
    firmware_dir: Path | None = None
    """None: the HAL's default folder."""
    eui: bytes | None = None
    """Emulator only: the EUI the emulated chip reports."""
    fault: str | None = None
    """Emulator only: ``"no_answer"`` makes the chip silent (a board held in reset)."""
    gps_start_s: int = 1_400_000_000
    """Emulator only: the GPS time (s since the GPS epoch) its receiver starts at."""
    lbt: LbtSettings | None = None
    """Listen-before-talk on the board's SX1261 (``run`` only); None sends without it."""
    noise_floor_dbm: float = -110.0
    """Emulator only: what its SX1261 hears where nothing transmits."""
    busy_channels: tuple[tuple[int, float], ...] = ()
    """Emulator only: (frequency Hz, level dBm) its SX1261 hears as occupied."""
    model: str = "SX1302"
    """Emulator only: "SX1303" emulates the chip with fine timestamps."""


@dataclass
class Radio:
    """An opened concentrator and what comes with it on its board."""

    concentrator: Concentrator
    board: BoardProfile
    open_gps: GpsOpener | None
    """Opens the board's GPS receiver paired with the PPS-latched counter; None: no receiver."""
    sleep: Callable[[float], None]
    """Waits on the concentrator's own clock (a stepping clock for an inspected emulator)."""
    checks: Callable[[ChannelPlan | None], list[HalCheck]]
    """``doctor``'s hardware checks on this concentrator, in order (bring-up too with a plan)."""
    close: Callable[[], None]
    """Stop the radio, hold the board in reset and release its devices."""
    emulator: Sx1302Emulator | None = None
    """The emulated chip; read only by the simulator wing (``gateway/sim``)."""
    open_scanner: Callable[[], Sx1261] | None = None
    """Powers the board and opens its SX1261, patched, for spectral scans; None without one."""

    @property
    def max_conducted_dbm(self) -> int | None:
        """The strongest entry of the board's TX power table (None if it has none)."""
        lut = self.board.tx_gain_lut
        return max(e.rf_power_dbm for e in lut) if lut else None

    @property
    def power_steps_dbm(self) -> tuple[int, ...]:
        """Every conducted power the board's TX power table makes, rising (downlinks asking
        for more are sent at the strongest step at or below the request)."""
        return tuple(sorted(e.rf_power_dbm for e in self.board.tx_gain_lut))


Opener = Callable[[RadioSettings, Purpose], Radio]

_OPENERS: dict[str, str] = {
    "sx1302": "hal.backends.spi",
    "sx1302_usb": "hal.backends.usb",
    "emulator": "hal.backends.emulated",
}
"""Backend name → module with an ``open_radio(settings, purpose)``; imported when chosen."""


def _opener_module(settings: RadioSettings) -> str:
    if settings.backend == "sx1302" and settings.spi_device == EMULATED_DEVICE:
        return _OPENERS["emulator"]
    if settings.backend == "sx1302_usb" and settings.usb_device == EMULATED_DEVICE:
        return "hal.backends.emulated_usb"
    try:
        return _OPENERS[settings.backend]
    except KeyError:
        raise ValueError(f"unknown concentrator backend {settings.backend!r} "
                         f"(one of {', '.join(BACKENDS)})") from None


def open_radio(settings: RadioSettings, *, purpose: Purpose = "run") -> Radio:
    """Open the configured concentrator; raises ``HalError``/``OSError``/``ImportError``."""
    module = importlib.import_module(_opener_module(settings))
    opener: Opener = module.open_radio
    return opener(settings, purpose)
