"""The ``sx1302_usb`` backend with ``usb_device = "emulator"``: the real USB link code to an
emulated MCU in front of the emulated chip, so the USB path runs without a board."""

from __future__ import annotations

import time
from collections.abc import Callable

from hal.backends import Purpose, Radio, RadioSettings
from hal.backends._bundle import sx1302_radio
from hal.backends.usb import concentrator_over_usb
from hal.emulator.chip import DEFAULT_EUI, Sx1302Emulator
from hal.emulator.usb_mcu import EmulatedUsbMcu
from hal.sx1302 import Sx1302Concentrator
from hal.usb_mcu import open_link
from hardware.board import get_board


def open_emulated_usb(*, clock: Callable[[], float] = time.monotonic,
                      fault: str | None = None, version: str = "V01.00.00",
                      eui: bytes = DEFAULT_EUI,
                      ) -> tuple[Sx1302Concentrator, Sx1302Emulator, EmulatedUsbMcu]:
    """The real driver, through the real USB link code, to an emulated MCU and chip."""
    emulator = Sx1302Emulator(eui=eui, clock=clock, board=get_board("emulator"))
    mcu = EmulatedUsbMcu(emulator, version=version, fault=fault)
    link = open_link(mcu, "emulated-usb", sleep=lambda _s: None, clock=clock)
    conc = concentrator_over_usb(link, "emulated-usb", board="emulator",
                                 sleep=lambda _s: None, clock=clock)
    return conc, emulator, mcu


def open_radio(settings: RadioSettings, purpose: Purpose) -> Radio:
    """The registry's opener for ``usb_device = "emulator"``."""
    driver, chip, _mcu = open_emulated_usb(fault=settings.fault,
                                           eui=settings.eui or DEFAULT_EUI)
    return sx1302_radio(driver, sleep=time.sleep, emulator=chip)
