"""Sizes and durations as the manifest writes them (`4GiB`, `1h30min`)."""

from __future__ import annotations

import re

_SIZE_UNITS = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
_SIZE = re.compile(r"^([0-9]+) ?(KiB|MiB|GiB|TiB)$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"([0-9]+)(ms|s|min|h|d)")


def parse_size(text: str) -> int:
    """Bytes in a size such as `512MiB`; ValueError when it is not one."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r}")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


def parse_duration(text: str) -> float:
    """Seconds in a duration such as `15min` or `1h30min`; ValueError when it is not one."""
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += int(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"not a duration: {text!r}")
    return total
