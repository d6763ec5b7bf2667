"""A guest's console output, made safe for the operator's terminal. Pure.

The serial console is written by the guest, and a guest is not trusted with the terminal
that shows it: an escape sequence can set the window title, move the cursor over earlier
lines, or (OSC 52) write the clipboard. `TerminalFilter` lets through text, newlines, tabs
and colours (SGR, `ESC [ ... m`, which boot messages use), drops carriage returns (the
serial line ends lines with CR LF), and shows every other control character as `^X` (ESC
as `^[`, DEL as `^?`) and C1 controls as `\\x9b`, visible and inert. Bytes that are not
UTF-8 are shown as U+FFFD. `reconcile console --raw` passes the bytes through unchanged.
"""

from __future__ import annotations

import codecs
import re

_SGR = re.compile(r"\x1b\[[0-9;:]*m")
# an SGR sequence cut by the end of a chunk: held back until the next one
_PARTIAL = re.compile(r"\x1b(\[[0-9;:]*)?\Z")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _visible(match: re.Match[str]) -> str:
    c = match.group()
    if c == "\r":
        return ""
    code = ord(c)
    if code < 0x20:
        return "^" + chr(code + 0x40)
    if code == 0x7F:
        return "^?"
    return f"\\x{code:02x}"


def _clean(text: str) -> str:
    out = []
    pos = 0
    for match in _SGR.finditer(text):
        out.append(_CONTROL.sub(_visible, text[pos : match.start()]))
        out.append(match.group())
        pos = match.end()
    out.append(_CONTROL.sub(_visible, text[pos:]))
    return "".join(out)


class TerminalFilter:
    """Feed it the console's bytes as they come; it returns text safe to print."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._held = ""

    def feed(self, data: bytes) -> str:
        text = self._held + self._decoder.decode(data)
        partial = _PARTIAL.search(text)
        self._held = partial.group() if partial else ""
        return _clean(text[: partial.start()] if partial else text)

    def flush(self) -> str:
        """What is held back (a cut sequence, an unfinished UTF-8 character), made visible."""
        text = self._held + self._decoder.decode(b"", final=True)
        self._held = ""
        return _clean(text)
