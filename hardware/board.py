"""Board profiles: everything that differs between SX1302 carrier boards, read from TOML data.

Each board is one file in ``hardware/boards/`` (SPI device, GPIO chip and lines,
reset/power polarity and timing, radio type, RSSI offset and temperature
compensation, TX power table, antenna gain, fitted temperature sensor and GPS).
The files are validated with the same :class:`common.toml_reader.TableReader`
as the gateway's own configuration, so a bad value is a one-line error naming
the file, the key, the value and what is allowed. The driver in :mod:`hal` is the
same for every board; only these values change.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from common.toml_reader import ConfigError, TableReader

RADIO_TYPES = ("sx1250",)
DEFAULT_CHIP_LABELS = ("pinctrl-rp1", "pinctrl-bcm2711", "pinctrl-bcm2835")
DEFAULT_I2C_ADDRESSES = (0x39, 0x3B, 0x38)
_HEX_BYTE = r"0x[0-9A-Fa-f]{2}"


class BoardError(ValueError):
    """An unknown board name, or a board file that does not validate."""


@dataclass(frozen=True, slots=True)
class TxGainEntry:
    """One calibrated TX power step: requested dBm → external PA on/off and SX1250 power index."""

    rf_power_dbm: int
    pa_gain: int
    pwr_idx: int


@dataclass(frozen=True, slots=True)
class TemperatureSensor:
    """An STTS751 on an I2C bus; the driver probes ``addresses`` in order."""

    i2c_device: str = "/dev/i2c-1"
    addresses: tuple[int, ...] = DEFAULT_I2C_ADDRESSES


@dataclass(frozen=True, slots=True)
class GpsReceiver:
    """A u-blox style receiver on a UART, its PPS wired to the SX1302."""

    uart: str = "/dev/serial0"
    baudrate: int = 9600


@dataclass(frozen=True, slots=True)
class LbtRadio:
    """The SX1261 used for listen-before-talk and spectral scan, on its own chip-select."""

    spi_device: str = "/dev/spidev0.1"
    rssi_offset_db: float = 0.0
    """Added to the SX1261's RSSI (the reference's ``sx1261.rssi_offset``, 0 by default)."""


@dataclass(frozen=True, slots=True)
class BoardProfile:
    """Everything board-specific the driver uses; lines are BCM GPIO offsets (None: not wired)."""

    name: str
    reset_pin: int | None
    power_pin: int | None = None
    sx1261_reset_pin: int | None = None
    rssi_offset_db: float = -215.4
    """Added to the chip's raw RSSI byte (SX1250 reference boards)."""
    clock_source: int = 0
    """Which radio (0 = A, 1 = B) clocks the SX1302."""
    tx_gain_lut: tuple[TxGainEntry, ...] = ()
    description: str = ""
    radio_type: str = "sx1250"
    spi_device: str = "/dev/spidev0.0"
    tx_radio: int = 0
    """The radio wired to the PA: transmissions go out on it, so it is always brought up."""
    gpio_chip_labels: tuple[str, ...] = DEFAULT_CHIP_LABELS
    reset_active_high: bool = True
    power_active_high: bool = True
    reset_step_s: float = 0.1
    rssi_tcomp: tuple[float, float, float, float, float] = (0.0, 0.0, 20.41, 2162.56, 0.0)
    """Coefficients a..e of the RSSI temperature polynomial (result in 1/65536 dB)."""
    antenna_gain_dbi: float = 0.0
    temperature_sensor: TemperatureSensor | None = None
    gps: GpsReceiver | None = None
    lbt_radio: LbtRadio | None = None
    """The SX1261 (LBT, spectral scan) when fitted; None on boards without one."""
    fine_timestamp: bool = False
    """Use the SX1303's fine timestamps when the chip is one (GPS PPS must reach it)."""

    def tx_gain_for(self, power_dbm: int) -> TxGainEntry:
        """The highest table entry not above ``power_dbm`` (the lowest one if all are above).

        This mirrors how the reference driver picks a power step: never emit more
        than asked for, except when the request is below the table's range.
        """
        if not self.tx_gain_lut:
            raise ValueError(f"board {self.name!r} has no TX power table")
        chosen = self.tx_gain_lut[0]
        for entry in self.tx_gain_lut:
            if entry.rf_power_dbm <= power_dbm:
                chosen = entry
        return chosen

    def rssi_temperature_offset_db(self, celsius: float) -> float:
        """The RSSI correction at ``celsius``: (a·T⁴ + b·T³ + c·T² + d·T + e) / 2¹⁶ dB."""
        a, b, c, d, e = self.rssi_tcomp
        t = celsius
        return (a * t**4 + b * t**3 + c * t**2 + d * t + e) / 65536.0


# --- reading board files --------------------------------------------------------------------
def _optional_line(t: TableReader, key: str) -> int | None:
    value: int = t.integer(key, -1, low=-1, high=511)
    return None if value < 0 else value


def _addresses(t: TableReader) -> tuple[int, ...]:
    raw = t.list_of_strings("addresses") or [f"0x{a:02X}" for a in DEFAULT_I2C_ADDRESSES]
    out = []
    for text in raw:
        try:
            value = int(text, 16) if text.lower().startswith("0x") else -1
        except ValueError:
            value = -1
        if not 0x03 <= value <= 0x77:
            raise t.error("addresses", raw, "I2C addresses as strings like \"0x39\" (0x03-0x77)")
        out.append(value)
    return tuple(out)


def _gain_table(t: TableReader) -> tuple[TxGainEntry, ...]:
    entries = []
    for row in t.tables("tx_gain"):
        entries.append(TxGainEntry(row.integer("rf_power", low=-10, high=32),
                                   row.integer("pa_gain", low=0, high=1),
                                   row.integer("pwr_idx", low=0, high=31)))
        row.finish()
    powers = [e.rf_power_dbm for e in entries]
    if not entries or powers != sorted(set(powers)):
        raise t.error("tx_gain", powers, "1 to 16 [[tx_gain]] rows in strictly rising rf_power")
    if len(entries) > 16:
        raise t.error("tx_gain", len(entries), "at most 16 rows (the SX1302 power table size)")
    return tuple(entries)


def _tcomp(t: TableReader) -> tuple[float, float, float, float, float]:
    values = [t.number(k, 0.0, low=-1e9, high=1e9) for k in "abcde"]
    t.finish()
    return values[0], values[1], values[2], values[3], values[4]


def _gpio(t: TableReader) -> dict[str, Any]:
    labels = t.list_of_strings("chip_labels") or list(DEFAULT_CHIP_LABELS)
    out = dict(
        gpio_chip_labels=tuple(labels),
        reset_pin=_optional_line(t, "reset_line"),
        power_pin=_optional_line(t, "power_line"),
        sx1261_reset_pin=_optional_line(t, "sx1261_reset_line"),
        reset_active_high=t.boolean("reset_active_high", True),
        power_active_high=t.boolean("power_active_high", True),
        reset_step_s=t.integer("step_ms", 100, low=1, high=5000) / 1000.0,
    )
    t.finish()
    return out


def _sensor(t: TableReader, fitted: bool) -> TemperatureSensor | None:
    sensor = TemperatureSensor(t.string("i2c_device", "/dev/i2c-1", pattern=r"/dev/i2c-\d+",
                                        pattern_text="a /dev/i2c-N path"), _addresses(t))
    t.finish()
    return sensor if fitted else None


def _gps(t: TableReader, fitted: bool) -> GpsReceiver | None:
    gps = GpsReceiver(t.string("uart", "/dev/serial0"),
                      t.integer("baudrate", 9600, low=4800, high=921600))
    t.finish()
    return gps if fitted else None


def _lbt_radio(t: TableReader, fitted: bool) -> LbtRadio | None:
    radio = LbtRadio(t.string("spi_device", "/dev/spidev0.1",
                              pattern=r"(/dev/spidev\d+\.\d+|emulator)",
                              pattern_text="a /dev/spidevB.C path"),
                     t.number("rssi_offset_db", 0.0, low=-30, high=30))
    t.finish()
    return radio if fitted else None


def parse_board(data: dict[str, Any], source: str) -> BoardProfile:
    """Validate one parsed board file; raises :class:`ConfigError` naming the key."""
    t = TableReader(data, "", source, Path(source).parent)
    name = t.string("name", pattern=r"[a-z0-9][a-z0-9_-]*", pattern_text="lowercase a-z0-9_-")
    radio_type = t.string("radio", "sx1250", choices=RADIO_TYPES)
    profile = dict(
        name=name, radio_type=radio_type,
        description=t.string("description", ""),
        spi_device=t.string("spi_device", "/dev/spidev0.0",
                            pattern=r"(/dev/spidev\d+\.\d+|emulator)",
                            pattern_text="a /dev/spidevB.C path"),
        clock_source=t.integer("clock_source", 0, low=0, high=1),
        tx_radio=t.integer("tx_radio", 0, low=0, high=1),
        antenna_gain_dbi=t.number("antenna_gain_dbi", 0.0, low=-10, high=30),
        fine_timestamp=t.boolean("fine_timestamp", False),
    )
    has_sensor = t.boolean("temperature_sensor", False)
    has_gps = t.boolean("gps", False)
    has_sx1261 = t.boolean("sx1261", False)
    profile.update(_gpio(t.table("gpio")))
    rssi = t.table("rssi")
    profile["rssi_offset_db"] = rssi.number("offset_db", -215.4, low=-300, high=0)
    profile["rssi_tcomp"] = _tcomp(rssi.table("temperature_compensation"))
    rssi.finish()
    profile["tx_gain_lut"] = _gain_table(t)
    profile["temperature_sensor"] = _sensor(t.table("temperature"), has_sensor)
    profile["gps"] = _gps(t.table("gps_receiver"), has_gps)
    profile["lbt_radio"] = _lbt_radio(t.table("sx1261_radio"), has_sx1261)
    t.finish()
    return BoardProfile(**profile)


def load_board_file(path: Path) -> BoardProfile:
    """Read and validate one board file (also for a user's own board outside the package)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BoardError(f"{path}: {exc}") from exc
    try:
        board = parse_board(data, str(path))
    except ConfigError as exc:
        raise BoardError(str(exc)) from exc
    if board.name != path.stem:
        raise BoardError(f"{path}: name = {board.name!r}: must match the file name {path.stem!r}")
    return board


def _load_packaged() -> Mapping[str, BoardProfile]:
    # Next to this module, not importlib.resources: see packet_forwarder.regions.loader.
    folder = Path(__file__).resolve().parent / "boards"
    boards: dict[str, BoardProfile] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            board = load_board_file(entry)
            boards[board.name] = board
    return MappingProxyType(boards)


BOARDS: Mapping[str, BoardProfile] = _load_packaged()
"""Every board shipped with the package, by name (read once, immutable)."""


def get_board(name: str) -> BoardProfile:
    """The named profile, or a board file's path; the error lists the known names."""
    if name.endswith(".toml"):
        return load_board_file(Path(name))
    try:
        return BOARDS[name]
    except KeyError:
        known = ", ".join(sorted(BOARDS))
        raise BoardError(f"unknown board {name!r}; known boards: {known}") from None
