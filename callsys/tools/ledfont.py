"""A 5x7 dot-matrix font, as window LED strips show numbers, drawn with half-block characters.

Two font rows share one terminal line (``▀``, ``▄``, ``█``), so each dot is about square on a
terminal whose cells are twice as tall as wide. Covers what a ticket number and a window
number need: digits, Latin capitals, space and ``-``; other characters are drawn blank.
"""

from __future__ import annotations

from typing import Final

HEIGHT: Final = 7  # dots per glyph, top to bottom
WIDTH: Final = 5  # dots per glyph, left to right (plus one blank column between glyphs)

_GLYPHS: Final[dict[str, tuple[str, ...]]] = {
    "0": (" ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### "),
    "1": ("  #  ", " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "),
    "2": (" ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####"),
    "3": ("#####", "   # ", "  #  ", "   # ", "    #", "#   #", " ### "),
    "4": ("   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # "),
    "5": ("#####", "#    ", "#### ", "    #", "    #", "#   #", " ### "),
    "6": ("  ## ", " #   ", "#    ", "#### ", "#   #", "#   #", " ### "),
    "7": ("#####", "    #", "   # ", "  #  ", " #   ", " #   ", " #   "),
    "8": (" ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### "),
    "9": (" ### ", "#   #", "#   #", " ####", "    #", "   # ", " ##  "),
    "A": (" ### ", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"),
    "B": ("#### ", "#   #", "#   #", "#### ", "#   #", "#   #", "#### "),
    "C": (" ### ", "#   #", "#    ", "#    ", "#    ", "#   #", " ### "),
    "D": ("#### ", "#   #", "#   #", "#   #", "#   #", "#   #", "#### "),
    "E": ("#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#####"),
    "F": ("#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#    "),
    "G": (" ### ", "#   #", "#    ", "# ###", "#   #", "#   #", " ####"),
    "H": ("#   #", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"),
    "I": (" ### ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "),
    "J": ("  ###", "   # ", "   # ", "   # ", "   # ", "#  # ", " ##  "),
    "K": ("#   #", "#  # ", "# #  ", "##   ", "# #  ", "#  # ", "#   #"),
    "L": ("#    ", "#    ", "#    ", "#    ", "#    ", "#    ", "#####"),
    "M": ("#   #", "## ##", "# # #", "# # #", "#   #", "#   #", "#   #"),
    "N": ("#   #", "#   #", "##  #", "# # #", "#  ##", "#   #", "#   #"),
    "O": (" ### ", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "),
    "P": ("#### ", "#   #", "#   #", "#### ", "#    ", "#    ", "#    "),
    "Q": (" ### ", "#   #", "#   #", "#   #", "# # #", "#  # ", " ## #"),
    "R": ("#### ", "#   #", "#   #", "#### ", "# #  ", "#  # ", "#   #"),
    "S": (" ####", "#    ", "#    ", " ### ", "    #", "    #", "#### "),
    "T": ("#####", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  "),
    "U": ("#   #", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "),
    "V": ("#   #", "#   #", "#   #", "#   #", "#   #", " # # ", "  #  "),
    "W": ("#   #", "#   #", "#   #", "# # #", "# # #", "# # #", " # # "),
    "X": ("#   #", "#   #", " # # ", "  #  ", " # # ", "#   #", "#   #"),
    "Y": ("#   #", "#   #", " # # ", "  #  ", "  #  ", "  #  ", "  #  "),
    "Z": ("#####", "    #", "   # ", "  #  ", " #   ", "#    ", "#####"),
    "-": ("     ", "     ", "     ", " ### ", "     ", "     ", "     "),
    " ": ("     ",) * HEIGHT,
}
_HALF: Final = {(False, False): " ", (True, False): "▀", (False, True): "▄", (True, True): "█"}


def dots(text: str, scale: int = 1) -> list[list[bool]]:
    """The dot matrix of *text* (upper-cased), each dot *scale* x *scale*."""
    glyphs = [_GLYPHS.get(ch, _GLYPHS[" "]) for ch in text.upper()]
    rows = []
    for y in range(HEIGHT):
        row = []
        for i, glyph in enumerate(glyphs):
            if i:
                row.extend([False] * scale)  # a blank column between glyphs
            row.extend(dot == "#" for dot in glyph[y] for _ in range(scale))
        rows.extend([row] * scale)
    return rows


def big_lines(text: str, scale: int = 1) -> list[str]:
    """*text* in the LED font: ``ceil(7 * scale / 2)`` lines of half blocks."""
    rows = dots(text, scale)
    if len(rows) % 2:
        rows.append([False] * len(rows[0]) if rows else [])
    return ["".join(_HALF[top, bottom] for top, bottom in zip(rows[y], rows[y + 1])) for y in range(0, len(rows), 2)]


def width_of(text: str, scale: int = 1) -> int:
    """Terminal columns *text* takes in the LED font."""
    return max(0, (len(text) * (WIDTH + 1) - 1) * scale)
