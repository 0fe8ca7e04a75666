"""``lora-gateway survey`` on the emulator, and the spectral-scan arithmetic under it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import Config, load_config
from gateway.doctor_hw import concentrator_checks
from gateway.doctor_result import CheckResult
from gateway.png import Canvas, decode_rgb
from gateway.radio import radio_settings
from gateway.survey import BOTTOM_PX, COLOURS, HEIGHT_PX, bar_left, noise_floor_check
from hal.backends import open_radio
from hal.emulator.sx1261 import Sx1261Emulator
from hal.spectral import scan_channel, summarise
from hal.sx1261 import SCAN_BINS, Sx1261

BUSY_HZ = 922_100_000
CONFIG = f"""
[concentrator]
backend = "emulator"
region = "KR920"
[concentrator.emulator]
noise_floor_dbm = -112.0
busy_channels = [{{frequency_hz = {BUSY_HZ}, rssi_dbm = -55.0}}]
[mqtt]
server = "mqtt://127.0.0.1:1883"
"""


def _write(tmp_path: Path, text: str = CONFIG) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def test_survey_prints_the_chart_and_writes_a_png_naming_the_busy_channel(tmp_path: Path) -> None:
    png = tmp_path / "survey.png"
    proc = subprocess.run([sys.executable, "-m", "gateway", "survey", "-c",
                           str(_write(tmp_path)), "--png", str(png)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    rows = [line for line in lines if "MHz" not in line and "|" in line]
    assert len(rows) == 13  # KR920: 920.9–923.3 MHz on the 200 kHz grid
    (loud,) = [line for line in rows if "<- loudest" in line]
    assert "922.100" in loud and loud.startswith("*")  # a configured channel
    bars = {line.split()[-4 if "<-" in line else -3]: line.count("#") for line in rows}
    assert max(bars.values()) == loud.count("#")
    assert "loudest: 922.100 MHz" in proc.stdout

    width, height, pixels = decode_rgb(png.read_bytes())
    # the red (loudest) bar is the 7th of 13, left to right, and the tallest
    red = bytes(COLOURS["loudest"])
    columns = [x for x in range(width) if any(row[3 * x:3 * x + 3] == red for row in pixels)]
    assert columns and bar_left(6) <= columns[0] < bar_left(7)

    def bar_height(x: int) -> int:
        return sum(1 for row in pixels if row[3 * x:3 * x + 3] in {
            bytes(COLOURS[k]) for k in ("scan", "channel", "loudest")})

    heights = [bar_height(bar_left(i) + 5) for i in range(13)]
    assert heights.index(max(heights)) == 6 and max(heights) > 3 * min(heights)
    assert height == HEIGHT_PX
    text = bytes(COLOURS["text"])
    label_rows = [y for y, row in enumerate(pixels) if text in row]
    assert label_rows and max(label_rows) > height - BOTTOM_PX  # frequencies under the bars


def test_survey_refuses_a_board_without_sx1261(tmp_path: Path) -> None:
    text = CONFIG.replace('backend = "emulator"',
                          'backend = "sx1302"\nboard = "rak2287"\nspi_device = "emulator"')
    proc = subprocess.run([sys.executable, "-m", "gateway", "survey", "-c",
                           str(_write(tmp_path, text)), "--png", str(tmp_path / "x.png")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1
    assert "no SX1261" in proc.stderr
    assert not (tmp_path / "x.png").exists()


def _floor_line(config: Config) -> CheckResult | None:
    radio = open_radio(radio_settings(config), purpose="inspect")
    try:
        return noise_floor_check(radio, config)
    finally:
        radio.close()


def test_doctor_line_reports_the_configured_channels_noise_floor(tmp_path: Path) -> None:
    check = _floor_line(load_config(_write(tmp_path)))
    assert check is not None
    assert check.status == "warn" and "922.100 MHz" in check.detail  # the neighbour at −55
    quiet = _floor_line(load_config(_write(tmp_path, CONFIG.replace(
        f"busy_channels = [{{frequency_hz = {BUSY_HZ}, rssi_dbm = -55.0}}]", ""))))
    assert quiet is not None and quiet.status == "ok" and "median -112 dBm" in quiet.detail


def test_doctor_on_the_emulator_prints_the_noise_floor_line(tmp_path: Path) -> None:
    results, _eui = concentrator_checks(load_config(_write(tmp_path)))
    (line,) = [r for r in results if r.name == "noise_floor"]
    assert line.status == "warn" and "922.100 MHz" in line.detail


@pytest.mark.parametrize("level", [-112.0, -80.0, -55.0])
def test_scan_of_a_steady_level_reads_back_within_a_db(level: float) -> None:
    emu = Sx1261Emulator(noise_floor_dbm=level)
    scan = scan_channel(Sx1261(emu, lambda _s: None), 868_100_000, samples=1000)
    assert abs(scan.noise_floor_dbm - level) <= 1.0
    assert level < scan.peak_dbm <= level + 3 + 4  # within the spread plus one bin
    assert [(round(f, -3), n) for f, n in emu.scans] == [(868_100_000, 1000)]


def test_summary_of_a_histogram_with_everything_below_the_lowest_level() -> None:
    counts = (0,) * (SCAN_BINS - 1) + (500,)
    scan = summarise(1, counts, 0.0)
    assert scan.noise_floor_dbm == scan.peak_dbm == -128.0
    assert scan.samples == 500


def test_png_round_trip() -> None:
    canvas = Canvas(3, 2)
    canvas.rect(1, 0, 2, 2, (1, 2, 3))
    width, height, rows = decode_rgb(canvas.encode())
    assert (width, height) == (3, 2) and rows[1][3:6] == b"\x01\x02\x03"
