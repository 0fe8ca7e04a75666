"""Doctor's concentrator checks against the emulator: healthy board, and each failure's message."""

from __future__ import annotations

from hal.backends.emulated import open_emulated
from hal.doctor_checks import (
    check_counter,
    check_gps,
    check_spi_device,
    check_temperature,
    run_concentrator_checks,
)
from hal.emulator.chip import MODEL_SX1303
from hal.emulator.gps import GpsEmulator
from hal.emulator.stepping_clock import SteppingClock
from hal.gps_time import GpsClock, GpsReader
from hal.types import EU868_DEFAULT_PLAN


def test_a_healthy_emulated_board_passes_every_check() -> None:
    clock = SteppingClock()
    conc, emu = open_emulated(clock=clock, eui=bytes.fromhex("0016c001ff10a235"),
                              model_id=MODEL_SX1303)
    clock.gps = GpsEmulator(emu)
    results = run_concentrator_checks(
        conc, sleep=clock.sleep, plan=EU868_DEFAULT_PLAN,
        gps=lambda: GpsReader(clock.gps, conc.pps_counter_us, GpsClock(clock)))  # type: ignore[arg-type]
    by_name = {r.name: r for r in results}
    assert [r.name for r in results] == ["spi", "chip", "eui", "model", "bring-up", "counter",
                                        "temperature", "gps", "pps"]
    assert all(r.status == "ok" for r in results), results
    assert by_name["chip"].detail == "version 0x10 on emulator"
    assert by_name["eui"].detail == "0016c001ff10a235"
    assert by_name["model"].detail == "SX1303"
    assert by_name["temperature"].detail == "25.0 °C"
    assert by_name["gps"].detail == "fix, 8 satellites"


def test_no_answer_prints_the_clear_error_and_stops() -> None:
    conc, emu = open_emulated()
    emu.no_answer = True
    results = run_concentrator_checks(conc, sleep=lambda s: None, plan=EU868_DEFAULT_PLAN)
    assert [r.name for r in results] == ["spi", "chip"]
    chip = results[-1]
    assert chip.status == "fail"
    assert chip.detail == ("no answer from the concentrator on emulator — check SPI is enabled "
                           "and the reset pin")
    assert chip.hint


def test_a_missing_or_locked_spi_device_says_what_to_do() -> None:
    missing = check_spi_device("/dev/spidev0.0", exists=lambda p: False)
    assert missing.status == "fail" and "enable SPI" in missing.hint
    locked = check_spi_device("/dev/spidev0.0", exists=lambda p: True, accessible=lambda p: False)
    assert locked.status == "fail" and "spi group" in locked.hint
    assert check_spi_device("/dev/spidev0.0", exists=lambda p: True,
                            accessible=lambda p: True).status == "ok"


def test_a_stuck_counter_fails() -> None:
    conc, _ = open_emulated(clock=lambda: 5.0)  # time never moves: the counter cannot advance
    result = check_counter(conc, lambda s: None)
    assert result.status == "fail" and "stuck" in result.detail


def test_an_absent_temperature_sensor_warns_and_a_board_without_one_is_skipped() -> None:
    conc, emu = open_emulated()
    emu.sensor.absent = True
    result = check_temperature(conc)
    assert result is not None and result.status == "warn" and "no STTS751" in result.detail
    plain, _ = open_emulated(board="wm1302")
    assert check_temperature(plain) is None


def test_gps_without_fix_warns_and_silence_fails() -> None:
    clock = SteppingClock()
    conc, emu = open_emulated(clock=clock)
    conc.start(EU868_DEFAULT_PLAN)
    clock.gps = GpsEmulator(emu)
    clock.gps.fix = False
    reader = GpsReader(clock.gps, conc.pps_counter_us, GpsClock(clock))
    fix, pps = check_gps(reader, clock.sleep)
    assert (fix.status, pps.status) == ("warn", "warn")
    silent = GpsEmulator(emu)
    result = check_gps(GpsReader(silent, conc.pps_counter_us, GpsClock(clock)), lambda s: None)
    assert [r.status for r in result] == ["fail"]
