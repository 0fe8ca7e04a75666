"""The ``sx1302_usb`` backend: the SX1302 driver over a USB concentrator's MCU (CDC-ACM port).

Only the transport differs from the SPI boards: the MCU does the SPI and drives
the reset lines itself, so the driver gets no GPIO lines, and the board's
temperature comes from the MCU's status answer instead of an I2C sensor.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path

from hal.backends import Purpose, Radio, RadioSettings
from hal.backends._bundle import sx1302_radio
from hal.firmware import DEFAULT_FIRMWARE_DIR, KNOWN_SHA256, load_firmware
from hal.sx1302 import Sx1302Concentrator
from hal.usb_mcu import SerialPort, UsbMcuLink, UsbSpiTransport, open_link
from hardware.board import get_board

USB_BOARD = "corecell"
"""Board profile used for RF data (power table, RSSI offsets) of a USB concentrator."""


def open_serial(device: str) -> SerialPort:
    import serial

    port: SerialPort = serial.Serial(device, 115_200, timeout=0.05)
    return port


def concentrator_over_usb(link: UsbMcuLink, name: str, *, board: str = USB_BOARD,
                          **kwargs: object) -> Sx1302Concentrator:
    def temperature() -> float:
        return link.status().temperature_c

    return Sx1302Concentrator(UsbSpiTransport(link), board=get_board(board), spi_name=name,
                              temperature=temperature, **kwargs)  # type: ignore[arg-type]


def open_sx1302_usb(device: str, board: str = USB_BOARD, *, firmware_dir: Path | None = None,
                    firmware_sha256: Mapping[str, frozenset[str]] = KNOWN_SHA256,
                    port_opener: Callable[[str], SerialPort] | None = None,
                    load_images: bool = True) -> Sx1302Concentrator:
    """The driver on a USB concentrator; firmware files are checked before the port opens."""
    images = load_firmware(firmware_dir or DEFAULT_FIRMWARE_DIR, firmware_sha256) \
        if load_images else None
    port = (port_opener or open_serial)(device)
    try:
        link = open_link(port, device)
    except Exception:
        port.close()
        raise
    return concentrator_over_usb(link, device, board=board, firmware=images)


def open_radio(settings: RadioSettings, purpose: Purpose, *,
               port_opener: Callable[[str], SerialPort] | None = None) -> Radio:
    """The registry's opener: every SPI frame to the chip goes through the MCU's link."""
    if settings.usb_device is None:
        raise ValueError("concentrator.usb_device is not set")
    driver = open_sx1302_usb(settings.usb_device, firmware_dir=settings.firmware_dir,
                             load_images=purpose == "run",
                             port_opener=port_opener or open_serial)
    return sx1302_radio(driver, sleep=time.sleep)
