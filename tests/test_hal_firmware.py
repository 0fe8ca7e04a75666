"""AGC/ARB firmware: files and hashes, the load sequence and both handshakes, against the emulator.

The images are synthetic (generated here); Semtech's are never in the repository.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hal.backends.emulated import open_emulated
from hal.emulator.chip import Sx1302Emulator
from hal.emulator.mcu import EmulatorSequenceError
from hal.errors import FirmwareError
from hal.firmware import (
    AGC_SX1250_FILE,
    ARB_FILE,
    KNOWN_SHA256,
    FirmwareImages,
    load_firmware,
    sha256_hex,
)
from hal.mcu import AGC_SX1250_STEPS, Mcus
from hal.registers import Registers
from hal.spi import Sx1302Spi
from hal.types import EU868_DEFAULT_PLAN
from tests.support.firmware import AGC, ALLOWED, ARB, synthetic_image


@pytest.fixture
def fw_dir(tmp_path: Path) -> Path:
    (tmp_path / AGC_SX1250_FILE).write_bytes(AGC)
    (tmp_path / ARB_FILE).write_bytes(ARB)
    return tmp_path


def test_images_load_when_their_hashes_are_allowed(fw_dir: Path) -> None:
    images = load_firmware(fw_dir, ALLOWED)
    assert (images.agc, images.arb) == (AGC, ARB)


def test_a_missing_file_is_one_clear_error_naming_it_and_what_to_install(fw_dir: Path) -> None:
    (fw_dir / ARB_FILE).unlink()
    with pytest.raises(FirmwareError, match=rf"{ARB_FILE} is missing — install .*firmware"):
        load_firmware(fw_dir, ALLOWED)


def test_a_missing_directory_is_reported(tmp_path: Path) -> None:
    with pytest.raises(FirmwareError, match="does not exist"):
        load_firmware(tmp_path / "nope", ALLOWED)


def test_the_default_allow_list_refuses_synthetic_images(fw_dir: Path) -> None:
    with pytest.raises(FirmwareError, match=f"SHA-256 {sha256_hex(AGC)}.*not on the allow-list"):
        load_firmware(fw_dir, KNOWN_SHA256)


def test_a_truncated_file_is_refused(fw_dir: Path) -> None:
    (fw_dir / AGC_SX1250_FILE).write_bytes(AGC[:100])
    with pytest.raises(FirmwareError, match="100 bytes, expected 8192"):
        load_firmware(fw_dir, ALLOWED)


def test_bring_up_with_firmware_loads_both_mcus_and_then_receives(fw_dir: Path) -> None:
    conc, emu = open_emulated(firmware_dir=fw_dir, require_firmware=True, firmware_sha256=ALLOWED)
    conc.start(EU868_DEFAULT_PLAN)
    assert emu.mcus.loads == ["AGC:ok", "ARB:ok"]
    assert emu.mcus.started == {"AGC": True, "ARB": True}
    emu.inject(b"hello", frequency_hz=868_100_000, sf=7, bw_hz=125_000, rssi_dbm=-70, snr_db=5)
    assert [p.payload for p in conc.receive()] == [b"hello"]


def test_an_emulator_requiring_firmware_hears_nothing_without_it() -> None:
    conc, emu = open_emulated()
    emu.require_firmware = True
    conc.start(EU868_DEFAULT_PLAN)
    assert emu.inject(b"x", frequency_hz=868_100_000, sf=7, bw_hz=125_000, rssi_dbm=-70,
                      snr_db=5) is None


def test_a_different_image_never_boots_and_the_timeout_names_the_step(fw_dir: Path) -> None:
    conc, emu = open_emulated(firmware_dir=fw_dir, require_firmware=True, firmware_sha256=ALLOWED)
    emu.mcus.expected["AGC"] = synthetic_image(b"other")
    with pytest.raises(FirmwareError, match=r"AGC start: AGC_MCU_STATUS stayed 0x00.*after 1 s"):
        conc.start(EU868_DEFAULT_PLAN)
    assert emu.mcus.loads == ["AGC:bad image"]


@pytest.mark.parametrize("mcu", ["AGC", "ARB"])
def test_a_hung_mcu_times_out_instead_of_spinning_forever(fw_dir: Path, mcu: str) -> None:
    conc, emu = open_emulated(firmware_dir=fw_dir, require_firmware=True, firmware_sha256=ALLOWED)
    emu.mcus.hang = mcu
    with pytest.raises(FirmwareError, match=rf"{mcu} start: {mcu}_MCU_STATUS stayed"):
        conc.start(EU868_DEFAULT_PLAN)


def _booted_agc() -> tuple[Registers, Sx1302Emulator]:
    emu = Sx1302Emulator()
    regs = Registers(Sx1302Spi(emu))
    Mcus(regs, lambda s: None).load("AGC", AGC)
    return regs, emu


def test_writing_firmware_ram_while_the_mcu_runs_fails_loudly() -> None:
    emu = Sx1302Emulator()
    spi = Sx1302Spi(emu)
    spi.write(0x5780, 0x10)  # MCU_CLEAR released, HOST_PROG off
    with pytest.raises(EmulatorSequenceError, match="not held for programming"):
        spi.burst_write(0x0000, b"\x01\x02")


def test_releasing_the_mcu_while_the_host_still_programs_fails_loudly() -> None:
    emu = Sx1302Emulator()
    regs = Registers(Sx1302Spi(emu))
    regs.write("AGC_MCU_CTRL_HOST_PROG", 1)
    with pytest.raises(EmulatorSequenceError, match="HOST_PROG is still 1"):
        regs.write("AGC_MCU_CTRL_MCU_CLEAR", 0)


def test_an_agc_command_out_of_order_fails_loudly() -> None:
    regs, _ = _booted_agc()
    with pytest.raises(EmulatorSequenceError, match="expects command 0x80, got 0x20"):
        regs.write("AGC_MCU_MAILBOX_WR_3", 0x20)  # radio B before radio A


def test_agc_parameters_other_than_the_expected_ones_fail_loudly() -> None:
    regs, _ = _booted_agc()
    mcus = Mcus(regs, lambda s: None)
    bad = (*AGC_SX1250_STEPS[:2], AGC_SX1250_STEPS[2].__class__("analog", (2, 13), 0x03, 0x04))
    with pytest.raises(EmulatorSequenceError, match=r"parameters \(2, 13\), expected \(1, 13\)"):
        mcus.start_agc(10, bad)


def test_a_wrong_agc_version_is_refused() -> None:
    regs, _ = _booted_agc()
    with pytest.raises(FirmwareError, match="AGC firmware version 10, expected 6"):
        Mcus(regs, lambda s: None).start_agc(6)


def test_firmware_images_must_be_8_kib() -> None:
    with pytest.raises(FirmwareError):
        FirmwareImages(agc=b"\x00" * 10, arb=ARB)
