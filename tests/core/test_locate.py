from __future__ import annotations

from reconcile.core.manifest.locate import first_duplicate, key_lines, line_of
from reconcile.core.units import parse_duration, parse_size

TEXT = '''# comment [not.a.table]
[lab]
name = "x" # trailing
desc = """
[fake.header]
name = "inside a string"
"""

[[items]]
a.b = 1
[[items]]
c = [
  1,
  { d = "}", e = [2, 3] },
]
[t."quoted.key"]
k = 'v'
'''


def test_key_lines() -> None:
    lines = key_lines(TEXT)
    assert lines[("lab",)] == 2
    assert lines[("lab", "name")] == 3
    assert ("fake",) not in lines
    assert lines[("items", 0, "a", "b")] == 10
    assert lines[("items", 1, "c", 1, "e")] == 14
    assert lines[("items", 1, "c", 0)] == 13
    assert lines[("t", "quoted.key", "k")] == 17
    assert line_of(lines, ("items", 1, "c", 1, "e", 0, "nope")) == 14
    assert line_of(lines, ("absent",)) is None


def test_first_duplicate() -> None:
    assert first_duplicate("a = 1\nb = 2\na = 3\n") == (("a",), 3)
    assert first_duplicate("a = 1\n") is None


def test_units() -> None:
    assert parse_size("4GiB") == 4 << 30
    assert parse_size("512 MiB") == 512 << 20
    assert parse_duration("1h30min") == 5400
    assert parse_duration("250ms") == 0.25
    for bad in ("", "1x", "min", "1h 30min"):
        try:
            parse_duration(bad)
        except ValueError:
            continue
        raise AssertionError(bad)
