"""A 3×5 pixel font for the few labels the survey chart needs (numbers, MHz, dBm).

The gateway draws its PNG without a graphics library (see :mod:`gateway.png`), so
the axis labels come from this table: each glyph is five rows of three cells, ``#``
lit. Characters outside the table are drawn as a blank cell, never an error.
"""

from __future__ import annotations

from gateway.png import RGB, Canvas

GLYPHS: dict[str, tuple[str, ...]] = {
    "0": ("###", "#.#", "#.#", "#.#", "###"),
    "1": (".#.", "##.", ".#.", ".#.", "###"),
    "2": ("###", "..#", "###", "#..", "###"),
    "3": ("###", "..#", "###", "..#", "###"),
    "4": ("#.#", "#.#", "###", "..#", "..#"),
    "5": ("###", "#..", "###", "..#", "###"),
    "6": ("###", "#..", "###", "#.#", "###"),
    "7": ("###", "..#", ".#.", ".#.", ".#."),
    "8": ("###", "#.#", "###", "#.#", "###"),
    "9": ("###", "#.#", "###", "..#", "###"),
    "-": ("...", "...", "###", "...", "..."),
    ".": ("...", "...", "...", "...", ".#."),
    "*": ("...", "#.#", ".#.", "#.#", "..."),
    "M": ("#.#", "###", "###", "#.#", "#.#"),
    "H": ("#.#", "#.#", "###", "#.#", "#.#"),
    "z": ("...", "###", ".#.", "#..", "###"),
    "d": ("..#", "..#", "###", "#.#", "###"),
    "B": ("##.", "#.#", "##.", "#.#", "##."),
    "m": ("...", "##.", "###", "#.#", "#.#"),
}
GLYPH_W, GLYPH_H = 3, 5


def text_width(text: str, scale: int = 1) -> int:
    """Pixels ``text`` takes: each glyph plus one column of space, less the last space."""
    return max(0, len(text) * (GLYPH_W + 1) - 1) * scale


def draw_text(canvas: Canvas, x: int, y: int, text: str, colour: RGB, scale: int = 1) -> None:
    """``text`` with its top-left corner at (x, y), each cell ``scale`` pixels square."""
    for i, char in enumerate(text):
        glyph = GLYPHS.get(char)
        if glyph is None:
            continue
        left = x + i * (GLYPH_W + 1) * scale
        for row, cells in enumerate(glyph):
            for col, cell in enumerate(cells):
                if cell == "#":
                    canvas.rect(left + col * scale, y + row * scale,
                                left + (col + 1) * scale, y + (row + 1) * scale, colour)
