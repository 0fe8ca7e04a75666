"""GPIO output lines for the concentrator's reset and power-enable pins.

Since Linux 6.6 the sysfs GPIO numbers moved, so lines are requested through the
GPIO character device (libgpiod 2.x), picking the chip by its label: the Pi 5's
header pins are on ``pinctrl-rp1``, the Pi 4's on ``pinctrl-bcm2711``. RPi.GPIO
(or its drop-in replacement rpi-lgpio) is the fallback. Both are imported only
when a line is opened, so nothing here is needed off a Raspberry Pi.
"""

from __future__ import annotations

import glob
from typing import Any

from hal.errors import HalError

HEADER_CHIP_LABELS = ("pinctrl-rp1", "pinctrl-bcm2711", "pinctrl-bcm2835")
CONSUMER = "lora-gateway"


class GpioError(HalError):
    """No usable GPIO library, or the line could not be requested."""


class GpiodLine:
    """One output line requested from a GPIO character device (libgpiod v2 bindings)."""

    def __init__(self, gpiod: Any, chip_path: str, offset: int) -> None:
        from gpiod.line import Direction, Value

        self._value = Value
        self._offset = offset
        settings = gpiod.LineSettings(direction=Direction.OUTPUT, output_value=Value.INACTIVE)
        self._request = gpiod.request_lines(chip_path, consumer=CONSUMER,
                                            config={offset: settings})

    def set(self, high: bool) -> None:
        self._request.set_value(self._offset, self._value.ACTIVE if high else self._value.INACTIVE)

    def close(self) -> None:
        self._request.release()


class RpiGpioLine:
    """One output line through RPi.GPIO (BCM numbering)."""

    def __init__(self, gpio: Any, pin: int) -> None:
        self._gpio = gpio
        self._pin = pin
        gpio.setmode(gpio.BCM)
        gpio.setwarnings(False)
        gpio.setup(pin, gpio.OUT, initial=gpio.LOW)

    def set(self, high: bool) -> None:
        self._gpio.output(self._pin, self._gpio.HIGH if high else self._gpio.LOW)

    def close(self) -> None:
        self._gpio.cleanup(self._pin)


def find_header_chip(gpiod: Any, labels: tuple[str, ...] = HEADER_CHIP_LABELS) -> str:
    """Path of the GPIO chip driving the 40-pin header, chosen by label in ``labels`` order."""
    found: dict[str, str] = {}
    for path in sorted(glob.glob("/dev/gpiochip*")):
        try:
            with gpiod.Chip(path) as chip:
                found.setdefault(chip.get_info().label, path)
        except OSError:
            continue
    for label in labels:
        if label in found:
            return found[label]
    raise GpioError(f"no GPIO chip labelled {' or '.join(labels)} (found: {sorted(found)})")


def open_output_line(bcm_pin: int, labels: tuple[str, ...] = HEADER_CHIP_LABELS
                     ) -> GpiodLine | RpiGpioLine:
    """An output line for header pin ``bcm_pin`` (BCM number), driven low to start.

    The character device is tried first, its chip chosen by ``labels``; RPi.GPIO
    only when the gpiod 2.x bindings are not installed.
    """
    try:
        import gpiod
    except ImportError:
        gpiod = None
    if gpiod is not None and hasattr(gpiod, "request_lines"):
        try:
            return GpiodLine(gpiod, find_header_chip(gpiod, labels), bcm_pin)
        except OSError as exc:
            raise GpioError(f"cannot request GPIO {bcm_pin}: {exc}") from exc
    try:
        import RPi.GPIO as rpi_gpio
    except (ImportError, RuntimeError) as exc:
        raise GpioError("neither gpiod (2.x) nor RPi.GPIO is usable; install the rpi extra") \
            from exc
    return RpiGpioLine(rpi_gpio, bcm_pin)
