"""Headless Chromium for `real` tests, and a stdlib PNG decoder to check what it drew.

A page test should look at pixels, not only at markup: Debian's `chromium` renders the file,
and `decode_png` (8-bit RGB/RGBA, non-interlaced, every filter type) turns the screenshot
into rows a test can measure. Each run gets its own HOME and profile in a temporary
directory, so nothing leaks between tests or into the real home; a hung browser is killed
with its whole process group.
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BASE_FLAGS = (
    "--headless",
    "--no-sandbox",  # root in a container: the setuid sandbox cannot start
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
)


def find_chromium() -> str:
    """The browser binary; RuntimeError when absent, since a real test must fail, not skip."""
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("chromium not found: run scripts/setup.sh (Debian package chromium)")


def _run(extra: list[str], url: str, timeout_s: float) -> str:
    """Run the browser once with a throwaway HOME and profile; its stdout on success."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as home:
        argv = [find_chromium(), *BASE_FLAGS, f"--user-data-dir={home}/profile", *extra, url]
        env = {**os.environ, "HOME": home, "XDG_CONFIG_HOME": f"{home}/.config"}
        env["XDG_CACHE_HOME"] = f"{home}/.cache"
        proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise RuntimeError(f"chromium did not finish within {timeout_s:g}s: {argv}") from None
        if proc.returncode != 0:
            raise RuntimeError(f"chromium exited {proc.returncode}: {argv}\n{err[-4000:]}")
        return out


def screenshot(
    page: Path, out: Path, *, width: int = 1280, height: int = 900, timeout_s: float = 60.0
) -> Path:
    """Screenshot `page` at width x height into `out`; returns `out` once it is a PNG."""
    out.unlink(missing_ok=True)
    flags = [f"--window-size={width},{height}", f"--screenshot={out}"]
    _run(flags, page.resolve().as_uri(), timeout_s)
    if not out.is_file() or out.read_bytes()[:8] != PNG_SIGNATURE:
        raise RuntimeError(f"chromium wrote no PNG at {out}")
    return out


def dump_dom(page: Path, *, width: int = 1280, height: int = 900, timeout_s: float = 60.0) -> str:
    """The DOM after load (scripts run) with the viewport at width x height."""
    return _run(
        [f"--window-size={width},{height}", "--dump-dom"], page.resolve().as_uri(), timeout_s
    )


# --- PNG -------------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {2: 3, 6: 4}  # colour type -> bytes per pixel at bit depth 8


@dataclass(frozen=True)
class Image:
    """Decoded pixels, row-major, `channels` bytes each (3 RGB or 4 RGBA)."""

    width: int
    height: int
    channels: int
    data: bytes

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        i = (y * self.width + x) * self.channels
        return self.data[i], self.data[i + 1], self.data[i + 2]

    def count(
        self,
        color: tuple[int, int, int],
        box: tuple[int, int, int, int] | None = None,
        tolerance: int = 2,
    ) -> int:
        """Pixels within `tolerance` per channel of `color` in box (x0, y0, x1, y1), exclusive."""
        x0, y0, x1, y1 = box or (0, 0, self.width, self.height)
        r, g, b = color
        found = 0
        for y in range(y0, y1):
            row = (y * self.width) * self.channels
            for x in range(x0, x1):
                i = row + x * self.channels
                d = self.data
                if (
                    abs(d[i] - r) <= tolerance
                    and abs(d[i + 1] - g) <= tolerance
                    and abs(d[i + 2] - b) <= tolerance
                ):
                    found += 1
        return found


def hex_rgb(color: str) -> tuple[int, int, int]:
    """`#1f7a3a` -> (31, 122, 58)."""
    value = color.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _unfilter(kind: int, line: bytearray, prev: bytes, bpp: int) -> None:
    """Undo one scanline's filter in place (PNG spec section 9: None, Sub, Up, Average, Paeth)."""
    n = len(line)
    if kind == 0:
        return
    if kind == 1:
        for i in range(bpp, n):
            line[i] = (line[i] + line[i - bpp]) & 0xFF
    elif kind == 2:
        for i in range(n):
            line[i] = (line[i] + prev[i]) & 0xFF
    elif kind == 3:
        for i in range(n):
            left = line[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
    elif kind == 4:
        for i in range(n):
            if i >= bpp:
                line[i] = (line[i] + _paeth(line[i - bpp], prev[i], prev[i - bpp])) & 0xFF
            else:
                line[i] = (line[i] + prev[i]) & 0xFF
    else:
        raise ValueError(f"PNG: unknown filter type {kind}")


def decode_png(data: bytes) -> Image:
    """Decode an 8-bit RGB or RGBA non-interlaced PNG; ValueError for anything else."""
    if data[:8] != PNG_SIGNATURE:
        raise ValueError("not a PNG")
    pos, idat, header = 8, [], None
    while pos + 12 <= len(data):
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        if zlib.crc32(ctype + body) != crc:
            raise ValueError(f"PNG: bad CRC in {ctype!r} chunk")
        pos += 12 + length
        if ctype == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif ctype == b"IDAT":
            idat.append(body)
        elif ctype == b"IEND":
            break
    if header is None:
        raise ValueError("PNG: no IHDR")
    width, height, depth, color, _compression, _filter, interlace = header
    if depth != 8 or color not in _CHANNELS or interlace != 0:
        raise ValueError(
            f"PNG: unsupported depth {depth}, colour type {color}, interlace {interlace}"
        )
    bpp = _CHANNELS[color]
    stride = width * bpp
    raw = zlib.decompress(b"".join(idat))
    if len(raw) != height * (stride + 1):
        raise ValueError(f"PNG: {len(raw)} bytes of image data, expected {height * (stride + 1)}")
    out = bytearray()
    prev = bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        line = bytearray(raw[start + 1 : start + 1 + stride])
        _unfilter(raw[start], line, prev, bpp)
        out += line
        prev = bytes(line)
    return Image(width, height, bpp, bytes(out))
