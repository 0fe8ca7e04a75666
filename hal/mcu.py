"""Load the SX1302's two MCUs (AGC and ARB) and run their start-up handshakes, with timeouts.

Loading: hold the MCU in clear, give the host the program bus, write the 8 KiB
image into its RAM, read it back and compare, hand the bus back, release the MCU,
then check its parity-error flag. Handshakes: the AGC talks through four mailbox
bytes (the host writes 0..2 then a command in 3, the firmware echoes 0..2 and
moves its status on); the ARB through debug registers. The reference driver
polls these statuses forever; here every wait has a timeout and the error says
which step of which MCU stalled.

The AGC parameter values are Semtech's defaults for SX1250 radios
(``loragw_agc_params.h``), written as data below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hal.errors import FirmwareError
from hal.registers import AGC_FW_RAM, ARB_FW_RAM, Registers

HANDSHAKE_TIMEOUT_S = 1.0
POLL_INTERVAL_S = 0.001
GAIN_AUTO = 0xFF
AGC_STATUS_READY = 0x01
ARB_STATUS_READY = 0x01
ARB_STATUS_RUNNING = 0x00
ARB_DOUBLE_DEMOD_OFF = 0x00
ARB_DOUBLE_DEMOD_ALL_SF = 0xFF
"""Fine-timestamp mode "all SF": one demodulator for the best stamp, one for the data
(``sx1302_arb_start``, loragw_sx1302.c)."""
ARB_DOUBLE_DETECT_THRESHOLD = 3
ARB_STATS_SF = 7


@dataclass(frozen=True, slots=True)
class AgcStep:
    """Write ``values`` to mailboxes 0.., post ``command`` in mailbox 3, await ``status``."""

    label: str
    values: tuple[int, ...]
    command: int
    status: int


AGC_SX1250_STEPS: tuple[AgcStep, ...] = (
    AgcStep("radio A gains", (GAIN_AUTO, GAIN_AUTO), 0x80, 0x02),
    AgcStep("radio B gains", (GAIN_AUTO, GAIN_AUTO), 0x20, 0x03),
    AgcStep("analog gain min/max", (1, 13), 0x03, 0x04),
    AgcStep("analog thresholds", (3, 12), 0x04, 0x05),
    AgcStep("decimator attenuation min/max", (4, 15), 0x05, 0x06),
    AgcStep("decimator thresholds", (40, 80, 90), 0x06, 0x07),
    AgcStep("channel attenuation min/max", (4, 14), 0x07, 0x08),
    AgcStep("channel thresholds", (52, 132), 0x08, 0x09),
    AgcStep("SX1250 PA config", (0, 7, 4), 0x09, 0x0A),
    AgcStep("PA start delay", (8,), 0x0A, 0x0B),  # 1 LSB = 100 µs
    AgcStep("LBT off", (0,), 0x0B, 0x0F),
)
AGC_DONE_COMMAND = 0x0F


class Mcus:
    """AGC/ARB firmware load and start, over named register fields."""

    def __init__(self, regs: Registers, sleep: Callable[[float], None], *,
                 timeout_s: float = HANDSHAKE_TIMEOUT_S, poll_s: float = POLL_INTERVAL_S) -> None:
        self._regs = regs
        self._sleep = sleep
        self._polls = max(1, round(timeout_s / poll_s))
        self._poll_s = poll_s
        self._timeout_s = timeout_s

    def load(self, mcu: str, image: bytes) -> None:
        """Write ``image`` into the ``"AGC"`` or ``"ARB"`` RAM, verify it, start the MCU."""
        base = {"AGC": AGC_FW_RAM, "ARB": ARB_FW_RAM}[mcu]
        regs = self._regs
        regs.write(f"{mcu}_MCU_CTRL_MCU_CLEAR", 1)
        regs.write(f"{mcu}_MCU_CTRL_HOST_PROG", 1)
        regs.write("COMMON_PAGE", 0)
        regs.spi.burst_write(base, image)
        readback = regs.spi.burst_read(base, len(image))
        if readback != image:
            first = next(i for i, (a, b) in enumerate(zip(readback, image, strict=True)) if a != b)
            raise FirmwareError(f"{mcu} firmware read-back differs at byte {first} — SPI "
                                "corruption (check wiring and SPI speed)")
        regs.write(f"{mcu}_MCU_CTRL_HOST_PROG", 0)
        regs.write(f"{mcu}_MCU_CTRL_MCU_CLEAR", 0)
        if regs.read(f"{mcu}_MCU_CTRL_PARITY_ERROR"):
            raise FirmwareError(f"{mcu} firmware parity error after load")

    def _wait(self, field: str, status: int, what: str) -> None:
        value = -1
        for _ in range(self._polls):
            value = self._regs.read(field)
            if value == status:
                return
            self._sleep(self._poll_s)
        raise FirmwareError(f"{what}: {field} stayed 0x{value:02X}, expected 0x{status:02X} "
                            f"after {self._timeout_s:g} s — firmware not running (wrong image, "
                            "or the radio clock is missing)")

    def start_agc(self, version: int, steps: tuple[AgcStep, ...] = AGC_SX1250_STEPS) -> None:
        """The AGC start-up dialogue: version check, then each parameter block, echoed back."""
        regs = self._regs
        self._wait("AGC_MCU_STATUS", AGC_STATUS_READY, "AGC start")
        got = regs.read("AGC_MCU_MAILBOX_RD_0")
        if got != version:
            raise FirmwareError(f"AGC firmware version {got}, expected {version} — wrong image")
        for step in steps:
            for n, value in enumerate(step.values):
                regs.write(f"AGC_MCU_MAILBOX_WR_{n}", value)
            regs.write("AGC_MCU_MAILBOX_WR_3", step.command)
            self._wait("AGC_MCU_STATUS", step.status, f"AGC {step.label}")
            echoed = tuple(regs.read(f"AGC_MCU_MAILBOX_RD_{n}") for n in range(len(step.values)))
            if echoed != step.values:
                raise FirmwareError(f"AGC {step.label}: wrote {step.values}, firmware echoed "
                                    f"{echoed}")
        regs.write("AGC_MCU_MAILBOX_WR_3", AGC_DONE_COMMAND)

    def start_arb(self, version: int, double_demod: int = ARB_DOUBLE_DEMOD_OFF) -> None:
        """The ARB start-up dialogue: version check, settings, then resume and await running."""
        regs = self._regs
        self._wait("ARB_MCU_STATUS", ARB_STATUS_READY, "ARB start")
        got = regs.read("ARB_DEBUG_STS_0")
        if got != version:
            raise FirmwareError(f"ARB firmware version {got}, expected {version} — wrong image")
        regs.write("ARB_DEBUG_CFG_0", ARB_STATS_SF)  # detect/alloc statistics for one SF
        regs.write("ARB_DEBUG_CFG_3", double_demod)  # per-SF bits; 0xFF for fine timestamps
        regs.write("ARB_DEBUG_CFG_2", ARB_DOUBLE_DETECT_THRESHOLD)
        regs.write("ARB_DEBUG_CFG_1", 1)  # resume
        self._wait("ARB_MCU_STATUS", ARB_STATUS_RUNNING, "ARB resume")
