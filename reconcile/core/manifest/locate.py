"""Where each key of a TOML document stands: key path -> line number.

tomlkit parses and reports syntax errors with a line, but does not say on which line a
*valid* key stands. Schema and semantic errors need that, so this scanner walks text that
tomlkit has already accepted and records the line of every key, array item and table
header. It is lenient by design: it runs on text tomllib accepted, and on text tomlkit
half-read (to find a duplicate key), so it must end on any text: every loop consumes at
least one character per turn, and nesting deeper than MAX_DEPTH is skipped, not recursed
into. Its work is then linear in the text, which parse_manifest caps at 1 MiB.
"""

from __future__ import annotations

import bisect

Path = tuple[str | int, ...]

MAX_DEPTH = 64  # arrays and inline tables nested deeper are skipped: no recursion limit
_BARE_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.newlines = [i for i, ch in enumerate(text) if ch == "\n"]
        self.lines: dict[Path, int] = {}
        self.table_counts: dict[Path, int] = {}
        self.duplicates: list[tuple[Path, int]] = []

    def line(self, pos: int) -> int:
        return bisect.bisect_left(self.newlines, pos) + 1

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos : self.pos + n]

    def skip_space(self, newlines: bool) -> None:
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch in " \t\r" or (newlines and ch == "\n"):
                self.pos += 1
            elif ch == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            else:
                return

    def record(self, path: Path, pos: int) -> None:
        self.lines.setdefault(path, self.line(pos))

    def key(self) -> list[str]:
        parts: list[str] = []
        while True:
            self.skip_space(False)
            ch = self.peek()
            if ch in ('"', "'"):
                parts.append(self.string())
            else:
                start = self.pos
                while self.pos < len(self.text) and self.text[self.pos] in _BARE_KEY_CHARS:
                    self.pos += 1
                parts.append(self.text[start : self.pos])
            self.skip_space(False)
            if self.peek() != ".":
                return parts
            self.pos += 1

    def string(self) -> str:
        quote = self.peek()
        if self.peek(3) == quote * 3:
            end = self.text.find(quote * 3, self.pos + 3)
            end = len(self.text) if end < 0 else end + 3
            while self.text[end : end + 1] == quote:  # """a"""" ends with quotes inside
                end += 1
            value = self.text[self.pos + 3 : end - 3]
            self.pos = end
            return value
        start = self.pos + 1
        self.pos = start
        while self.pos < len(self.text) and self.text[self.pos] != quote:
            if quote == '"' and self.text[self.pos] == "\\":
                self.pos += 1
            self.pos += 1
        value = self.text[start : self.pos]
        self.pos += 1
        return value

    def value(self, path: Path) -> None:
        self.skip_space(False)
        ch = self.peek()
        if ch in ('"', "'"):
            self.string()
        elif ch in ("[", "{") and len(path) > MAX_DEPTH:
            self.skip_nested()
        elif ch == "[":
            self.pos += 1
            index = 0
            while True:
                self.skip_space(True)
                if self.peek() in ("]", ""):
                    self.pos += 1
                    return
                before = self.pos
                self.record((*path, index), self.pos)
                self.value((*path, index))
                index += 1
                self.skip_space(True)
                if self.peek() == ",":
                    self.pos += 1
                self.advance_from(before)
        elif ch == "{":
            self.pos += 1
            while True:
                self.skip_space(False)
                if self.peek() in ("}", "", "\n"):  # an inline table ends on its line
                    self.pos += 1
                    return
                before = self.pos
                self.keyval(path)
                self.skip_space(False)
                if self.peek() == ",":
                    self.pos += 1
                self.advance_from(before)
        else:
            while self.pos < len(self.text) and self.text[self.pos] not in ",]}\n#":
                self.pos += 1

    def advance_from(self, before: int) -> None:
        """Step over a character no rule consumed (text tomlkit refused): never loop."""
        if self.pos == before:
            self.pos += 1

    def skip_nested(self) -> None:
        """Past the bracket that opens here and its match, counting brackets (strings in
        it are not told apart: deep values are not located, only stepped over)."""
        depth = 0
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            self.pos += 1
            depth += 1 if ch in "[{" else -1 if ch in "]}" else 0
            if depth == 0:
                return

    def keyval(self, table: Path) -> None:
        start = self.pos
        parts = self.key()
        if (*table, *parts) in self.lines:
            self.duplicates.append(((*table, *parts), self.line(start)))
        for depth in range(1, len(parts) + 1):
            self.record((*table, *parts[:depth]), start)
        self.skip_space(False)
        if self.peek() == "=":
            self.pos += 1
        self.value((*table, *parts))

    def header(self) -> Path:
        start = self.pos
        array = self.peek(2) == "[["
        self.pos += 2 if array else 1
        parts: Path = tuple(self.key())
        self.pos += 2 if array else 1
        for depth in range(1, len(parts) + 1):
            self.record(parts[:depth], start)
        if not array:
            return parts
        index = self.table_counts.get(parts, 0)
        self.table_counts[parts] = index + 1
        self.record((*parts, index), start)
        return (*parts, index)

    def document(self) -> dict[Path, int]:
        table: Path = ()
        while True:
            self.skip_space(True)
            if self.pos >= len(self.text):
                return self.lines
            before = self.pos
            if self.peek() == "[":
                table = self.header()
            else:
                self.keyval(table)
            if self.pos == before:  # never loop on text we do not understand
                self.pos += 1


def key_lines(text: str) -> dict[Path, int]:
    """Map every key path in well-formed TOML `text` to the line it stands on (1-based)."""
    return _Scanner(text).document()


def first_duplicate(text: str) -> tuple[Path, int] | None:
    """The first key that is set twice, and its second line (tomlkit may not say where)."""
    scanner = _Scanner(text)
    scanner.document()
    return scanner.duplicates[0] if scanner.duplicates else None


def line_of(lines: dict[Path, int], path: Path) -> int | None:
    """The line of `path`, or of its nearest ancestor that has one."""
    for depth in range(len(path), 0, -1):
        found = lines.get(path[:depth])
        if found is not None:
            return found
    return None
