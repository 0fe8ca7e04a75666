"""Power and reset sequences of a concentrator board, over the board's GPIO lines.

The order and timing are those of the reference reset script: power-enable on,
SX1302 reset pulse, SX1261 reset pulse, one step (100 ms by default) after each
edge. Polarity and step length come from the board profile. Lines are opened
through :func:`hal.gpio.open_output_line` (or any opener with that shape, so the
sequences are tested with fake lines).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hal.interface import OutputLine
from hardware.board import BoardProfile

LineOpener = Callable[[int, tuple[str, ...]], OutputLine]


@dataclass(slots=True)
class BoardLines:
    """The board's output lines; any of them may be absent (not wired)."""

    reset: OutputLine | None = None
    power: OutputLine | None = None
    sx1261_reset: OutputLine | None = None

    def close(self) -> None:
        for line in (self.reset, self.power, self.sx1261_reset):
            if line is not None:
                line.close()


def open_board_lines(board: BoardProfile, opener: LineOpener) -> BoardLines:
    """Open every wired line of ``board``; on a failure, close those already open."""
    lines = BoardLines()
    try:
        if board.reset_pin is not None:
            lines.reset = opener(board.reset_pin, board.gpio_chip_labels)
        if board.power_pin is not None:
            lines.power = opener(board.power_pin, board.gpio_chip_labels)
        if board.sx1261_reset_pin is not None:
            lines.sx1261_reset = opener(board.sx1261_reset_pin, board.gpio_chip_labels)
    except Exception:
        lines.close()
        raise
    return lines


def power_up_and_reset(lines: BoardLines, board: BoardProfile,
                       sleep: Callable[[float], None]) -> None:
    """Power on, pulse the SX1302 reset, then pulse the SX1261 reset (active low)."""
    step = board.reset_step_s
    if lines.power is not None:
        lines.power.set(board.power_active_high)
        sleep(step)
    if lines.reset is not None:
        lines.reset.set(board.reset_active_high)
        sleep(step)
        lines.reset.set(not board.reset_active_high)
        sleep(step)
    if lines.sx1261_reset is not None:
        lines.sx1261_reset.set(False)
        sleep(step)
        lines.sx1261_reset.set(True)
        sleep(step)


def hold_in_reset(lines: BoardLines, board: BoardProfile) -> None:
    """Assert the SX1302 reset and cut power: the state a stopped gateway leaves the board in."""
    if lines.reset is not None:
        lines.reset.set(board.reset_active_high)
    if lines.power is not None:
        lines.power.set(not board.power_active_high)
