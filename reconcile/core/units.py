"""Sizes and durations as the manifest writes them (`4GiB`, `1h30min`), and their bounds.

Durations are counted in whole milliseconds (an int), so a bound or a whole-second rule is
exact, never a float comparison. The bounds themselves live in the schema (`x-size`,
`x-duration`); the functions here say what is wrong with a value given them.
"""

from __future__ import annotations

import re

_SIZE_UNITS = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
_SIZE = re.compile(r"([0-9]+) ?(KiB|MiB|GiB|TiB)")
_DURATION_UNITS_MS = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION_PART = re.compile(r"([0-9]+)(ms|s|min|h|d)")


def parse_size(text: str) -> int:
    """Bytes in a size such as `512MiB`; ValueError when it is not one."""
    match = _SIZE.fullmatch(text)  # fullmatch: "512MiB\n" is not a size
    if not match:
        raise ValueError(f"not a size: {text!r}")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


def parse_duration_ms(text: str) -> int:
    """Milliseconds in a duration such as `15min` or `1h30min`; ValueError when it is not one."""
    pos, total = 0, 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += int(match.group(1)) * _DURATION_UNITS_MS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"not a duration: {text!r}")
    return total


def parse_duration(text: str) -> float:
    """Seconds in a duration such as `15min` or `1h30min`; ValueError when it is not one."""
    return parse_duration_ms(text) / 1000


def size_problem(text: str, minimum: str, maximum: str, multiple: str | None = None) -> str | None:
    """Why the size `text` is out of bounds (both inclusive) or not a whole `multiple`, or None."""
    value = parse_size(text)
    if value < parse_size(minimum):
        return f"must be at least {minimum}, got {text!r}"
    if value > parse_size(maximum):
        return f"must be at most {maximum}, got {text!r}"
    if multiple is not None and value % parse_size(multiple):
        return f"must be a whole number of {multiple.lstrip('1')}, got {text!r}"
    return None


def duration_problem(
    text: str, minimum: str, maximum: str, *, whole_seconds: bool = False
) -> str | None:
    """Why the duration `text` is out of bounds (both inclusive) or not whole seconds, or None."""
    value = parse_duration_ms(text)
    if value < parse_duration_ms(minimum):
        if value == 0:
            return f"must be longer than zero, got {text!r}"
        return f"must be at least {minimum}, got {text!r}"
    if value > parse_duration_ms(maximum):
        return f"must be at most {maximum}, got {text!r}"
    if whole_seconds and value % 1000:
        return f"must be a whole number of seconds, got {text!r}"
    return None


def format_size(size_bytes: int) -> str:
    """A size in the largest binary unit that divides it (what the manifest would say)."""
    for unit, factor in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size_bytes and size_bytes % factor == 0:
            return f"{size_bytes // factor}{unit}"
    return f"{size_bytes} bytes"
