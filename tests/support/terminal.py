"""Reading back what a program drew on a terminal: the screen its output leaves."""

from __future__ import annotations

import re

ESCAPE = re.compile(r"\x1b\[([\d;?]*)([A-Za-z])")


def screen(output: str) -> list[str]:
    """The lines a terminal shows after `output`, for the few controls reconcile writes:
    text, \\r, \\n, cursor up N lines to column 1 (`ESC[NF`), clear to the end of the screen
    (`ESC[J`), and colours (`ESC[...m`, ignored). Any other control fails the test."""
    lines, row, col = [""], 0, 0
    i = 0
    while i < len(output):
        if m := ESCAPE.match(output, i):
            if m[2] == "F":
                row, col = max(0, row - int(m[1] or 1)), 0
            elif m[2] == "J":
                del lines[row + 1 :]
                lines[row] = lines[row][:col]
            elif m[2] != "m":
                raise AssertionError(f"unexpected control sequence {m[0]!r}")
            i = m.end()
            continue
        char = output[i]
        if char == "\r":
            col = 0
        elif char == "\n":
            row, col = row + 1, 0
            if row == len(lines):
                lines.append("")
        else:
            line = lines[row].ljust(col)
            lines[row] = line[:col] + char + line[col + 1 :]
            col += 1
        i += 1
    return lines[:-1] if lines[-1] == "" else lines
