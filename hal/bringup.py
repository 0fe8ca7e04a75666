"""The SX1302 start sequence, step by step: radios and clock, channels, modems, TX, identity.

Each function is one step of the reference bring-up (``lgw_start``), written
against named register fields; :class:`hal.sx1302.Sx1302Concentrator` calls them
in order. Where this sequence knowingly differs from the reference, the golden
transcript test (``tests/test_hal_golden.py``) says so and why.
"""

from __future__ import annotations

from collections.abc import Callable

from hal.plan import FSK_CHAIN, SERVICE_CHAIN, RadioLayout
from hal.registers import Registers, tx_field
from hal.sx1250 import Sx1250
from hardware.board import BoardProfile

RADIO_RESET_HOLD_S = 0.5
RADIO_SETTLE_S = 0.01
OTP_MODEL_ADDRESS = 0xD0
MODELS = {0x00: "SX1302", 0x02: "SX1302", 0x03: "SX1303"}

Sleep = Callable[[float], None]


def radios_to_start(layout: RadioLayout, board: BoardProfile) -> list[int]:
    """Radios the plan uses, plus the one clocking the SX1302 and the one driving the PA."""
    return sorted(set(layout.radios_used) | {board.clock_source, board.tx_radio})


def reset_radio(regs: Registers, rf: int, sleep: Sleep) -> None:
    """SX1250 reset through the SX1302: SPI clock, enable, reset pulse, then auto-calibration."""
    letter = "AB"[rf]
    regs.write("COMMON_CTRL0_CLK32_RIF_CTRL", 0)  # SPI clock while the radio resets
    regs.write(f"AGC_MCU_RF_EN_{letter}_RADIO_EN", 1)
    regs.write(f"AGC_MCU_RF_EN_{letter}_RADIO_RST", 1)
    sleep(RADIO_RESET_HOLD_S)
    regs.write(f"AGC_MCU_RF_EN_{letter}_RADIO_RST", 0)
    sleep(RADIO_SETTLE_S)
    regs.write(f"AGC_MCU_RF_EN_{letter}_RADIO_RST", 1)
    sleep(RADIO_SETTLE_S)


def select_clock(regs: Registers, rf: int) -> None:
    regs.write("CLK_CTRL_CLK_SEL_CLK_RADIO_A_SEL", int(rf == 0))
    regs.write("CLK_CTRL_CLK_SEL_CLK_RADIO_B_SEL", int(rf == 1))
    regs.write("CLK_CTRL_CLK_SEL_CLKDIV_EN", 1)
    regs.write("COMMON_CTRL0_CLK32_RIF_CTRL", 1)


def bring_up_radios(regs: Registers, layout: RadioLayout, board: BoardProfile,
                    sleep: Sleep) -> None:
    """Reset and image-calibrate each radio, then tune it and leave it in continuous RX."""
    radios = radios_to_start(layout, board)
    regs.write("GPIO_OUT_L", 0)
    for rf in radios:
        reset_radio(regs, rf, sleep)
        regs.write(f"COMMON_CTRL0_SX1261_MODE_RADIO_{'AB'[rf]}", 1)
    select_clock(regs, board.clock_source)
    regs.write("AGC_MCU_CTRL_FORCE_HOST_FE_CTRL", 1)
    regs.write("AGC_MCU_RF_EN_A_PA_EN", 0)
    regs.write("AGC_MCU_RF_EN_A_LNA_EN", 0)
    for rf in radios:
        Sx1250(regs.spi, rf, sleep).calibrate_image(layout.centres_hz[rf])
    regs.write("AGC_MCU_CTRL_FORCE_HOST_FE_CTRL", 0)
    for rf in radios:
        reset_radio(regs, rf, sleep)
        Sx1250(regs.spi, rf, sleep).setup_rx(layout.centres_hz[rf])
        regs.write(f"COMMON_CTRL0_SX1261_MODE_RADIO_{'AB'[rf]}", 1)
    select_clock(regs, board.clock_source)
    regs.write("COMMON_CTRL0_HOST_RADIO_CTRL", 0)  # the AGC drives the radios from now on


def enable_modems(regs: Registers, layout: RadioLayout) -> None:
    """Demodulator enables, then the global enable: before the MCUs start, as the chip needs."""
    regs.write("COMMON_GEN_CONCENTRATOR_MODEM_ENABLE",
               int(any(c.index < SERVICE_CHAIN for c in layout.chains)))
    regs.write("COMMON_GEN_MBWSSF_MODEM_ENABLE", int(layout.chain(SERVICE_CHAIN) is not None))
    regs.write("COMMON_GEN_FSK_MODEM_ENABLE", int(layout.chain(FSK_CHAIN) is not None))
    regs.write("COMMON_GEN_GLOBAL_EN", 1)


def configure_tx_and_gps(regs: Registers) -> None:
    """Static TX front-end settings for SX1250 radios, then PPS latching (inverted polarity)."""
    for chain in (0, 1):
        regs.write(tx_field(chain, "TX_RFFE_IF_CTRL2_PLL_DIV_CTRL_AGC"), 1)
        regs.write(tx_field(chain, "TX_RFFE_IF_CTRL_TX_IF_DST"), 1)
    for chain in (0, 1):
        regs.write(tx_field(chain, "TX_RFFE_IF_CTRL_TX_MODE"), 1)
    for chain in (0, 1):
        regs.write(tx_field(chain, "TX_RFFE_IF_CTRL_TX_CLK_EDGE"), 0)
    regs.write("TIMESTAMP_GPS_CTRL_GPS_EN", 1)
    regs.write("TIMESTAMP_GPS_CTRL_GPS_POL", 1)


def read_model(regs: Registers) -> str:
    """"SX1302" or "SX1303" from the OTP model byte; anything else is reported as unknown."""
    regs.write("OTP_BYTE_ADDR", OTP_MODEL_ADDRESS)
    value = regs.read("OTP_RD_DATA")
    return MODELS.get(value, f"unknown (OTP model id 0x{value:02X})")


def read_eui(regs: Registers) -> bytes:
    """The 8-byte chip EUI from OTP bytes 0-7, most significant byte first."""
    out = bytearray()
    for i in range(8):
        regs.write("OTP_BYTE_ADDR", i)
        out.append(regs.read("OTP_RD_DATA"))
    return bytes(out)
