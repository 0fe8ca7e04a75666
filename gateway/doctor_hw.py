"""The concentrator half of ``lora-gateway doctor``: open the configured board and ask it.

The board is opened through the radio door for inspection (no firmware needed, no RX
started), so the same checks run against a real board (spidev + GPIO, or the USB MCU)
and against the emulator, which is how they are tested: with ``spi_device = "emulator"``
the ``sx1302`` backend puts the emulated chip behind the named board's profile, and
``[concentrator.emulator] fault = "no_answer"`` makes the chip silent, as a board that is
unseated or held in reset would be.
"""

from __future__ import annotations

from gateway.config import Config
from gateway.doctor_result import CheckResult, fail
from gateway.radio import radio_settings
from gateway.survey import noise_floor_check
from hal.backends import open_radio
from hal.errors import HalError
from hardware.board import BoardError


def concentrator_checks(config: Config) -> tuple[list[CheckResult], str | None]:
    """Run the HAL's checks in order; returns them and the EUI (hex) when it was read."""
    try:
        radio = open_radio(radio_settings(config), purpose="inspect")
    except ImportError as exc:
        return [fail("concentrator", f"Python module {exc.name or exc} is not installed",
                     "sudo apt install python3-spidev python3-libgpiod")], None
    except (HalError, BoardError, OSError, ValueError) as exc:
        return [fail("concentrator", f"cannot open the concentrator: {exc}",
                     "check concentrator.spi_device, concentrator.board and that SPI/GPIO "
                     "are enabled")], None
    try:
        results = [CheckResult(c.name, c.status, c.detail, c.hint) for c in radio.checks(None)]
        if all(r.status != "fail" for r in results):
            floor = noise_floor_check(radio, config)
            results += [floor] if floor is not None else []
    finally:
        radio.close()
    eui = next((r.detail for r in results if r.name == "eui" and r.status == "ok"), None)
    return results, eui
