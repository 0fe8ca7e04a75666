"""GPIO: the reset/power sequences per board with fake lines, and chip selection by label."""

from __future__ import annotations

import glob
import types
from dataclasses import replace
from typing import Any, ClassVar

import pytest

from hal import gpio
from hal.board_power import BoardLines, hold_in_reset, open_board_lines, power_up_and_reset
from hal.interface import OutputLine
from hardware.board import BOARDS


class FakeLine:
    def __init__(self, name: str, events: list[tuple[str, object]]) -> None:
        self.name = name
        self.events = events
        self.closed = False

    def set(self, high: bool) -> None:
        self.events.append((self.name, high))

    def close(self) -> None:
        self.closed = True


def _open(board_name: str) -> tuple[BoardLines, list[tuple[str, object]], list[tuple[int, Any]]]:
    events: list[tuple[str, object]] = []
    opened: list[tuple[int, Any]] = []
    board = BOARDS[board_name]
    names = {board.reset_pin: "reset", board.power_pin: "power",
             board.sx1261_reset_pin: "sx1261"}

    def opener(pin: int, labels: tuple[str, ...]) -> OutputLine:
        opened.append((pin, labels))
        return FakeLine(names[pin], events)

    return open_board_lines(board, opener), events, opened


def _run(board_name: str, **overrides: Any) -> list[tuple[str, object]]:
    lines, events, _ = _open(board_name)
    board = replace(BOARDS[board_name], **overrides)
    power_up_and_reset(lines, board, lambda s: events.append(("sleep", s)))
    return events


def test_corecell_sequence_is_power_then_sx1302_pulse_then_sx1261_pulse() -> None:
    assert _run("corecell") == [
        ("power", True), ("sleep", 0.1),
        ("reset", True), ("sleep", 0.1), ("reset", False), ("sleep", 0.1),
        ("sx1261", False), ("sleep", 0.1), ("sx1261", True), ("sleep", 0.1),
    ]


def test_rak_hat_has_only_the_reset_line() -> None:
    lines, _, opened = _open("rak2287")
    assert [pin for pin, _ in opened] == [17]
    assert lines.power is None and lines.sx1261_reset is None
    assert _run("rak2287") == [("reset", True), ("sleep", 0.1), ("reset", False), ("sleep", 0.1)]


def test_polarity_and_timing_come_from_the_profile() -> None:
    events = _run("wm1302", reset_active_high=False, power_active_high=False, reset_step_s=0.25)
    assert events[:6] == [("power", False), ("sleep", 0.25), ("reset", False), ("sleep", 0.25),
                          ("reset", True), ("sleep", 0.25)]


def test_hold_in_reset_asserts_reset_and_cuts_power() -> None:
    lines, events, _ = _open("corecell")
    hold_in_reset(lines, BOARDS["corecell"])
    assert events == [("reset", True), ("power", False)]


def test_lines_are_requested_with_the_boards_chip_labels() -> None:
    _, _, opened = _open("wm1302")
    assert [pin for pin, _ in opened] == [17, 18, 5]
    assert all(labels[0] == "pinctrl-rp1" for _, labels in opened)


def test_a_failing_open_closes_the_lines_already_open() -> None:
    events: list[tuple[str, object]] = []
    made: list[FakeLine] = []

    def opener(pin: int, labels: tuple[str, ...]) -> OutputLine:
        if pin == 18:
            raise gpio.GpioError("busy")
        made.append(FakeLine(str(pin), events))
        return made[-1]

    with pytest.raises(gpio.GpioError):
        open_board_lines(BOARDS["corecell"], opener)
    assert [line.closed for line in made] == [True]


class _FakeChip:
    labels: ClassVar[dict[str, str]] = {
        "/dev/gpiochip0": "pinctrl-bcm2711", "/dev/gpiochip4": "pinctrl-rp1",
        "/dev/gpiochip1": "raspberrypi-exp-gpio"}

    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self) -> _FakeChip:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def get_info(self) -> Any:
        return types.SimpleNamespace(label=self.labels[self.path])


def test_the_header_chip_is_chosen_by_label_not_number(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpiod = types.SimpleNamespace(Chip=_FakeChip)
    monkeypatch.setattr(glob, "glob", lambda pattern: sorted(_FakeChip.labels))
    assert gpio.find_header_chip(fake_gpiod) == "/dev/gpiochip4"  # a Pi 5 lists rp1 first
    assert gpio.find_header_chip(fake_gpiod, ("pinctrl-bcm2711",)) == "/dev/gpiochip0"
    with pytest.raises(gpio.GpioError, match="no GPIO chip labelled nope"):
        gpio.find_header_chip(fake_gpiod, ("nope",))
