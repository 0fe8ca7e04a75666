"""The emulated AGC and ARB MCUs: firmware RAM gating, boot on release, start-up dialogues.

The emulator checks what the driver does against its own copy of the rules (kept
separate from the driver's tables on purpose, so a mistake on either side shows):
firmware RAM may only be written while its MCU is held in clear with the host
owning the program bus on page 0; releasing the MCU boots the image if it is the
expected one; every AGC mailbox command must come in the expected order with the
expected parameters; the ARB may only be resumed once it has booted. A wrong
sequence raises :class:`EmulatorSequenceError` from the SPI transfer, loudly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hal.errors import HalError

COMMON_PAGE = 0x5600
CTRL = {"AGC": 0x5780, "ARB": 0x6080}
STATUS = {"AGC": 0x5781, "ARB": 0x6081}
RAM = {"AGC": 0x0000, "ARB": 0x2000}
RAM_SIZE = 0x2000
MCU_CLEAR = 0x04
HOST_PROG = 0x02
AGC_MAILBOX_WR = tuple(0x578C - n for n in range(4))
AGC_MAILBOX_RD = tuple(0x5790 - n for n in range(4))
ARB_CFG = tuple(0x6089 + n for n in range(4))
ARB_STS_0 = 0x608D
AGC_VERSION = 10
ARB_VERSION = 2

# command in mailbox 3 → (status the firmware moves to, parameters it insists on or None)
_AGC_DIALOGUE: tuple[tuple[int, int, tuple[int, ...] | None], ...] = (
    (0x80, 0x02, None), (0x20, 0x03, None), (0x03, 0x04, (1, 13)), (0x04, 0x05, (3, 12)),
    (0x05, 0x06, (4, 15)), (0x06, 0x07, (40, 80, 90)), (0x07, 0x08, (4, 14)),
    (0x08, 0x09, (52, 132)), (0x09, 0x0A, (0, 7, 4)), (0x0A, 0x0B, None), (0x0B, 0x0F, None),
)
_AGC_FINISH = 0x0F


class EmulatorSequenceError(HalError):
    """The driver broke the chip's firmware-load or handshake protocol."""


@dataclass(slots=True)
class McuPair:
    """State of both MCUs; ``expected`` images (None: any non-blank image boots)."""

    expected: dict[str, bytes | None] = field(default_factory=lambda: {"AGC": None, "ARB": None})
    hang: str | None = None
    """Fault mode: the named MCU ("AGC" or "ARB") never answers after boot."""
    booted: dict[str, bool] = field(default_factory=lambda: {"AGC": False, "ARB": False})
    started: dict[str, bool] = field(default_factory=lambda: {"AGC": False, "ARB": False})
    loads: list[str] = field(default_factory=list)
    _agc_step: int = 0

    def check_ram_write(self, address: int, mem: bytearray) -> None:
        mcu = "AGC" if address < RAM["ARB"] else "ARB"
        ctrl = mem[CTRL[mcu]]
        if not (ctrl & MCU_CLEAR and ctrl & HOST_PROG):
            raise EmulatorSequenceError(
                f"{mcu} firmware RAM written at 0x{address:04X} while the MCU is not held for "
                "programming (MCU_CLEAR and HOST_PROG must both be 1)")
        if mem[COMMON_PAGE] & 0x03:
            raise EmulatorSequenceError(f"{mcu} firmware RAM written with COMMON_PAGE "
                                        f"{mem[COMMON_PAGE] & 0x03}, not 0")

    def on_write(self, address: int, previous: int, value: int, mem: bytearray) -> None:
        for mcu, ctrl in CTRL.items():
            if address == ctrl:
                self._control(mcu, previous, value, mem)
        if address == AGC_MAILBOX_WR[3]:
            self._agc_command(value, mem)
        elif address == ARB_CFG[1] and value == 1:
            self._arb_resume(mem)

    def _control(self, mcu: str, previous: int, value: int, mem: bytearray) -> None:
        if value & MCU_CLEAR and not previous & MCU_CLEAR:
            self.booted[mcu] = self.started[mcu] = False
            mem[STATUS[mcu]] = 0
            return
        if not (previous & MCU_CLEAR and not value & MCU_CLEAR):
            return
        if value & HOST_PROG:
            raise EmulatorSequenceError(f"{mcu} released from clear while HOST_PROG is still 1")
        image = bytes(mem[RAM[mcu]:RAM[mcu] + RAM_SIZE])
        expected = self.expected[mcu]
        good = image == expected if expected is not None else any(image)
        self.loads.append(f"{mcu}:{'ok' if good else 'bad image'}")
        if not good or self.hang == mcu:
            return  # the MCU runs garbage: its status never moves
        self.booted[mcu] = True
        mem[STATUS[mcu]] = 0x01
        if mcu == "AGC":
            self._agc_step = 0
            mem[AGC_MAILBOX_RD[0]] = AGC_VERSION
        else:
            mem[ARB_STS_0] = ARB_VERSION

    def _agc_command(self, command: int, mem: bytearray) -> None:
        if not self.booted["AGC"]:
            raise EmulatorSequenceError(f"AGC mailbox command 0x{command:02X} before the AGC "
                                        "firmware runs")
        if self._agc_step == len(_AGC_DIALOGUE):
            if command != _AGC_FINISH:
                raise EmulatorSequenceError(f"AGC: expected the final 0x{_AGC_FINISH:02X}, got "
                                            f"0x{command:02X}")
            self.started["AGC"] = True
            return
        want, status, params = _AGC_DIALOGUE[self._agc_step]
        if command != want:
            raise EmulatorSequenceError(f"AGC: step {self._agc_step} expects command "
                                        f"0x{want:02X}, got 0x{command:02X}")
        written = tuple(mem[AGC_MAILBOX_WR[n]] for n in range(3))
        if params is not None and written[:len(params)] != params:
            raise EmulatorSequenceError(f"AGC command 0x{command:02X}: parameters "
                                        f"{written[:len(params)]}, expected {params}")
        for n in range(3):
            mem[AGC_MAILBOX_RD[n]] = written[n]
        mem[STATUS["AGC"]] = status
        self._agc_step += 1

    def _arb_resume(self, mem: bytearray) -> None:
        if not self.booted["ARB"]:
            raise EmulatorSequenceError("ARB resumed before its firmware runs")
        if mem[ARB_CFG[3]] not in (0x00, 0x3F, 0xFF) or mem[ARB_CFG[2]] > 3:
            raise EmulatorSequenceError(
                f"ARB resumed with double-demod 0x{mem[ARB_CFG[3]]:02X} / threshold "
                f"{mem[ARB_CFG[2]]}")
        mem[STATUS["ARB"]] = 0x00
        self.started["ARB"] = True

    @property
    def running(self) -> bool:
        return self.started["AGC"] and self.started["ARB"]
