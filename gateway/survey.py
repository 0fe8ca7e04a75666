"""``lora-gateway survey``: the noise floor across the band, so an installer can place the antenna.

The board's SX1261 runs one spectral scan per frequency (the region's band on a
200 kHz grid, plus every configured channel) and the result is drawn twice: as a
bar chart in the terminal and as a PNG file. Configured channels are marked; the
loudest frequency is named, because that is where a neighbour's transmitter or
a noisy power supply sits. ``doctor`` reuses the scan for the configured channels.

On the emulator the "air" is ``[concentrator.emulator]`` ``noise_floor_dbm`` and
``busy_channels``.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from gateway.config import Config
from gateway.doctor_result import CheckResult, ok, warn
from gateway.pixel_font import draw_text, text_width
from gateway.png import Canvas
from gateway.radio import radio_settings
from hal.backends import Radio, open_radio
from hal.spectral import ChannelScan, scan_band
from hal.sx1261 import Sx1261
from packet_forwarder.regions import load_region

DEFAULT_STEP_HZ = 200_000
DEFAULT_SAMPLES = 2000
CHART_WIDTH = 40
LEVEL_MIN_DBM, LEVEL_MAX_DBM = -130.0, -30.0
NOISY_FLOOR_DBM = -95.0
"""A configured channel above this loses sensitivity (and LBT will often hold downlinks)."""
BAR_PX, GAP_PX = 10, 2
PLOT_LEFT_PX, PLOT_TOP_PX, PLOT_HEIGHT_PX, RIGHT_PX, BOTTOM_PX = 44, 16, 220, 10, 24
"""The plot area's place in the PNG: the left margin holds the dBm scale, the bottom one
the frequencies in MHz."""
HEIGHT_PX = PLOT_TOP_PX + PLOT_HEIGHT_PX + BOTTOM_PX
LABEL_SCALE = 2
COLOURS = {"scan": (70, 110, 200), "channel": (40, 160, 70), "loudest": (210, 50, 40),
           "grid": (225, 225, 225), "peak": (30, 30, 30), "text": (60, 60, 60)}


class SurveyError(Exception):
    """The survey cannot run here (no SX1261 on the board, USB backend...)."""


Scanner = tuple[Sx1261, float, Callable[[float], None]]


@contextmanager
def open_scanner(config: Config) -> Iterator[Scanner]:
    """The board's SX1261 (patched, calibrated), its RSSI offset and the sleep to poll with."""
    radio = open_radio(radio_settings(config), purpose="inspect")
    try:
        yield scanner_of(radio, config)
    finally:
        radio.close()


def scanner_of(radio: Radio, config: Config) -> Scanner:
    """The SX1261 of an already opened radio, ready to scan the configured region's band."""
    if radio.open_scanner is None or radio.board.lbt_radio is None:
        raise SurveyError(f"board {radio.board.name!r} has no SX1261: no spectral scan "
                          "possible (the USB backend does not reach one either)")
    scanner = radio.open_scanner()
    scanner.calibrate_image(load_region(config.concentrator.region).band_hz[0])
    return scanner, radio.board.lbt_radio.rssi_offset_db, radio.sleep


def configured_channels(config: Config) -> list[int]:
    c = config.concentrator
    plan = load_region(c.region).default_channel_plan(c.sub_band)
    return sorted({ch.frequency_hz for ch in plan.all_channels()})


def band_frequencies(config: Config, step_hz: int) -> list[int]:
    low, high = load_region(config.concentrator.region).band_hz
    grid = set(range(low, high + 1, step_hz))
    return sorted(grid | set(configured_channels(config)))


def run_scan(config: Config, frequencies: list[int], samples: int) -> list[ChannelScan]:
    with open_scanner(config) as scanner:
        return scan_with(scanner, frequencies, samples)


def scan_with(scanner: Scanner, frequencies: list[int], samples: int) -> list[ChannelScan]:
    radio, offset, sleep = scanner
    return scan_band(radio, frequencies, samples=samples, rssi_offset_db=offset, sleep=sleep)


# --- drawing ---------------------------------------------------------------------------------
def loudest(scans: list[ChannelScan]) -> ChannelScan:
    return max(scans, key=lambda s: (s.noise_floor_dbm, s.peak_dbm))


def _fraction(level: float) -> float:
    return min(1.0, max(0.0, (level - LEVEL_MIN_DBM) / (LEVEL_MAX_DBM - LEVEL_MIN_DBM)))


def render_terminal(scans: list[ChannelScan], channels: set[int]) -> str:
    """One bar per frequency (length = noise floor from −130 to −30 dBm); * = configured."""
    top = loudest(scans)
    lines = [f"  {'MHz':>9}  {'floor':>9}  {'-130 dBm':<{CHART_WIDTH // 2}}"
             f"{'-30 dBm':>{CHART_WIDTH - CHART_WIDTH // 2}}   peak"]
    for s in scans:
        mark = "*" if s.frequency_hz in channels else " "
        bar = "#" * round(_fraction(s.noise_floor_dbm) * CHART_WIDTH)
        note = "  <- loudest" if s is top else ""
        lines.append(f"{mark} {s.frequency_hz / 1e6:9.3f}  {s.noise_floor_dbm:5.0f} dBm  "
                     f"|{bar:<{CHART_WIDTH}}| {s.peak_dbm:5.0f}{note}")
    floors = [s.noise_floor_dbm for s in scans if s.frequency_hz in channels]
    if floors:
        lines.append(f"configured channels (*): median floor {statistics.median(floors):.0f} dBm")
    lines.append(f"loudest: {top.frequency_hz / 1e6:.3f} MHz, floor {top.noise_floor_dbm:.0f} "
                 f"dBm, peak {top.peak_dbm:.0f} dBm")
    return "\n".join(lines)


def bar_left(index: int) -> int:
    """x of the left edge of the ``index``-th bar in the PNG."""
    return PLOT_LEFT_PX + index * (BAR_PX + GAP_PX)


def render_png(scans: list[ChannelScan], channels: set[int], path: Path) -> None:
    """Bars left to right in frequency order, height = noise floor (−130 … −30 dBm), a dark
    tick at each peak; green = configured channel, red = loudest (its peak written above
    it), grid every 10 dB labelled every 20, frequencies in MHz under every few bars."""
    width = bar_left(len(scans)) + RIGHT_PX
    canvas = Canvas(width, HEIGHT_PX)
    bottom = PLOT_TOP_PX + PLOT_HEIGHT_PX
    ink = COLOURS["text"]

    def y_of(level: float) -> int:
        return bottom - round(_fraction(level) * PLOT_HEIGHT_PX)

    for level in range(int(LEVEL_MIN_DBM), int(LEVEL_MAX_DBM) + 1, 10):
        canvas.rect(PLOT_LEFT_PX, y_of(level), width - RIGHT_PX, y_of(level) + 1,
                    COLOURS["grid"])
        if level % 20 == 0:
            label = str(level)
            draw_text(canvas, PLOT_LEFT_PX - 6 - text_width(label, LABEL_SCALE),
                      y_of(level) - 5, label, ink, LABEL_SCALE)
    draw_text(canvas, 2, 2, "dBm", ink, LABEL_SCALE)
    draw_text(canvas, 2, bottom + 8, "MHz", ink, LABEL_SCALE)
    label_step = max(1, -(-(text_width("000.0", LABEL_SCALE) + 6) // (BAR_PX + GAP_PX)))
    top = loudest(scans)
    for i, s in enumerate(scans):
        x = bar_left(i)
        kind = "loudest" if s is top else "channel" if s.frequency_hz in channels else "scan"
        canvas.rect(x, y_of(s.noise_floor_dbm), x + BAR_PX, bottom, COLOURS[kind])
        canvas.rect(x, y_of(s.peak_dbm), x + BAR_PX, y_of(s.peak_dbm) + 2, COLOURS["peak"])
        if i % label_step == 0:
            draw_text(canvas, x, bottom + 8, f"{s.frequency_hz / 1e6:.1f}", ink, LABEL_SCALE)
    peak = f"{top.peak_dbm:.0f}"
    i = scans.index(top)
    draw_text(canvas, bar_left(i), max(0, y_of(top.peak_dbm) - 14), peak, COLOURS["loudest"],
              LABEL_SCALE)
    canvas.save(path)


# --- the command and the doctor line ---------------------------------------------------------
def run_survey(config: Config, png: Path, *, step_hz: int = DEFAULT_STEP_HZ,
               samples: int = DEFAULT_SAMPLES) -> str:
    channels = configured_channels(config)
    scans = run_scan(config, band_frequencies(config, step_hz), samples)
    render_png(scans, set(channels), png)
    return render_terminal(scans, set(channels)) + f"\nPNG written to {png}"


def noise_floor_check(radio: Radio, config: Config) -> CheckResult | None:
    """The doctor line: noise floor of the configured channels; None without an SX1261."""
    if radio.open_scanner is None:
        return None
    try:
        scans = scan_with(scanner_of(radio, config), configured_channels(config),
                          DEFAULT_SAMPLES // 4)
    except Exception as exc:  # any failure is one doctor line, never a crash
        return warn("noise_floor", f"spectral scan failed: {exc}",
                    "check the SX1261 patch is installed (lora-gateway firmware install)")
    top = loudest(scans)
    floors = statistics.median(s.noise_floor_dbm for s in scans)
    detail = (f"{len(scans)} channels: median {floors:.0f} dBm, loudest "
              f"{top.frequency_hz / 1e6:.3f} MHz at {top.noise_floor_dbm:.0f} dBm")
    if top.noise_floor_dbm > NOISY_FLOOR_DBM:
        return warn("noise_floor", detail, "interference on a configured channel: move the "
                    "antenna away from it (lora-gateway survey shows the band)")
    return ok("noise_floor", detail)
