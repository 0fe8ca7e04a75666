"""Board profiles: every shipped file validates; a bad one is a one-line error naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from hardware.board import BOARDS, BoardError, get_board, load_board_file

BOARD_DIR = Path(__file__).parent.parent / "hardware" / "boards"
SHIPPED = sorted(p.stem for p in BOARD_DIR.glob("*.toml"))


def test_the_expected_boards_are_shipped() -> None:
    assert {"corecell", "rak2287", "rak5146", "wm1302", "generic", "emulator"} <= set(SHIPPED)
    assert sorted(BOARDS) == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_every_board_file_validates_and_is_usable(name: str) -> None:
    board = load_board_file(BOARD_DIR / f"{name}.toml")
    assert board.name == name
    assert board.radio_type == "sx1250"
    powers = [e.rf_power_dbm for e in board.tx_gain_lut]
    assert powers == sorted(powers) and 1 <= len(powers) <= 16
    assert board.tx_gain_for(powers[0] - 5) == board.tx_gain_lut[0]
    assert board.reset_step_s > 0
    if name != "emulator":
        assert board.reset_pin is not None


def test_known_pinouts() -> None:
    assert (BOARDS["corecell"].reset_pin, BOARDS["corecell"].power_pin,
            BOARDS["corecell"].sx1261_reset_pin) == (23, 18, 22)
    assert (BOARDS["rak2287"].reset_pin, BOARDS["rak2287"].power_pin) == (17, None)
    assert (BOARDS["wm1302"].reset_pin, BOARDS["wm1302"].power_pin,
            BOARDS["wm1302"].sx1261_reset_pin) == (17, 18, 5)
    assert BOARDS["corecell"].temperature_sensor is not None
    assert BOARDS["corecell"].temperature_sensor.addresses == (0x39, 0x3B, 0x38)
    assert BOARDS["rak2287"].gps is not None and BOARDS["wm1302"].gps is None


def test_rssi_temperature_polynomial_matches_the_reference_coefficients() -> None:
    board = BOARDS["corecell"]
    expected = (20.41 * 25**2 + 2162.56 * 25) / 65536
    assert board.rssi_temperature_offset_db(25.0) == pytest.approx(expected)
    assert board.rssi_temperature_offset_db(0.0) == 0.0


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _valid_text(name: str = "mine") -> str:
    text = (BOARD_DIR / "generic.toml").read_text(encoding="utf-8")
    return text.replace('name = "generic"', f'name = "{name}"')


def test_a_copy_of_the_generic_template_is_a_valid_board(tmp_path: Path) -> None:
    board = get_board(str(_write(tmp_path, "mine", _valid_text())))
    assert board.name == "mine"


@pytest.mark.parametrize(("old", "new", "key"), [
    ("reset_line = 17", "reset_line = 900", "gpio.reset_line"),
    ("clock_source = 0", "clock_source = 2", "clock_source"),
    ('radio = "sx1250"', 'radio = "sx1257"', "radio"),
    ("pwr_idx = 15", "pwr_idx = 99", "tx_gain[0].pwr_idx"),
    ("rf_power = 13", "rf_power = 12", "tx_gain"),
    ('addresses = ["0x39"', 'addresses = ["57"', "temperature.addresses"),
    ("step_ms = 100", "step_ms = 100\nstep_s = 1", "gpio.step_s"),
])
def test_a_bad_value_is_one_line_naming_file_key_and_allowed(tmp_path: Path, old: str, new: str,
                                                           key: str) -> None:
    text = _valid_text()
    assert old in text
    path = _write(tmp_path, "mine", text.replace(old, new, 1))
    with pytest.raises(BoardError) as info:
        load_board_file(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and f"{key} = " in message


def test_the_name_must_match_the_file(tmp_path: Path) -> None:
    with pytest.raises(BoardError, match="must match the file name"):
        load_board_file(_write(tmp_path, "other", _valid_text("mine")))


def test_unknown_board_names_list_the_known_ones() -> None:
    with pytest.raises(BoardError, match="known boards: corecell, emulator, generic"):
        get_board("corecel")


def test_broken_toml_is_a_board_error(tmp_path: Path) -> None:
    with pytest.raises(BoardError):
        load_board_file(_write(tmp_path, "mine", "name = "))
