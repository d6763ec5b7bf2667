"""The drift report's HTML page as a person sees it: headless Chromium, real pixels.

Markup tests cannot tell whether a 60-character store path pushes the page sideways or
whether the banner's colour is what a reader meets first; a screenshot can. The page is
rendered at 1280 px, the banner's colour is looked for in the top rows, and a test-only copy
with a probe script reports the document's scroll width (the product page has no script).
"""

from __future__ import annotations

import html
import json
import re
import struct
import time
import zlib
from dataclasses import replace
from pathlib import Path

import pytest

from reconcile.core.drift.report import (
    BANNER_COLORS,
    DriftField,
    DriftItem,
    DriftReport,
    DriftStatus,
    render_html,
)
from tests.support.browser import PNG_SIGNATURE, decode_png, dump_dom, hex_rgb, screenshot

WIDTH, HEIGHT = 1280, 900
NOW = 1_714_564_800.0  # 2024-05-01T12:00:00Z
H = 3600.0


def store(name: str, seed: str) -> str:
    return f"/nix/store/{(seed * 32)[:32]}-nixos-system-{name}-24.05.20240501.abcdef0"


def drifted_report() -> DriftReport:
    """A lab with every kind of difference a reader has to scan: long paths above all."""
    guests = (
        DriftItem("guest", "web", DriftStatus.IN_SYNC, where="local"),
        DriftItem(
            "guest",
            "db",
            DriftStatus.DRIFTED,
            fields=(
                DriftField("system", store("db", "a1"), store("db", "9z"), NOW - 3 * H - 720),
                DriftField("memory", "2048 MiB", "1024 MiB", NOW - 3 * H - 720),
                DriftField(
                    "kernel",
                    "/var/lib/reconcile/demo/kernels/next-4470c9ed0073c3296ac09faa/bzImage",
                    "/boot/vmlinuz-6.1.0-56-amd64",
                    NOW - 40 * 60,
                ),
            ),
            since=NOW - 3 * H - 720,
            where="local",
        ),
        DriftItem(
            "guest",
            "cache",
            DriftStatus.MISSING,
            note="domain absent",
            since=NOW - 26 * H,
            where="qemu+ssh://root@hv2.lab.example/system",
        ),
        DriftItem(
            "guest",
            "metrics-collector-with-a-rather-long-name-0001",
            DriftStatus.IGNORED,
            fields=(DriftField("vcpus", "2", "4", NOW - 5 * 86400),),
            note="accepted by ignore pattern 'vcpus'",
            since=NOW - 5 * 86400,
            where="local",
        ),
    )
    hosts = (
        DriftItem(
            "host",
            "box1",
            DriftStatus.DRIFTED,
            fields=(DriftField("system", store("box1", "b2"), store("box1", "c3"), NOW - 50 * 60),),
            since=NOW - 50 * 60,
            where="root@10.20.0.11:22",
        ),
        DriftItem("host", "box2", DriftStatus.IN_SYNC, where="root@10.20.0.12:22"),
    )
    return DriftReport(
        lab="demo",
        manifest="/srv/lab/manifests/demo.toml",
        generated_at=NOW,
        items=guests + hosts,
        unmanaged=(("local", "scratch-vm"), ("hv2", "someone-elses-" + "very-long-domain-" * 12)),
        commit="4470c9ed0073c3296ac09faa1d2b3c4d5e6f7a8b",
    )


def unknown_report() -> DriftReport:
    report = drifted_report()
    unknown = (
        DriftItem(
            "guest",
            "<script>alert(1)</script>",
            DriftStatus.UNKNOWN,
            note="libvirt unreachable: qemu+ssh://root@hv3.lab.example/system: "
            "Cannot recv data: ssh: connect to host hv3.lab.example port 22: No route to host",
            where="qemu+ssh://root@hv3.lab.example/system",
        ),
        DriftItem(
            "host",
            "box3",
            DriftStatus.UNKNOWN,
            note="ssh unreachable: root@10.20.0.13:22: timed out after 10s",
            where="root@10.20.0.13:22",
        ),
    )
    return replace(report, items=report.items + unknown)


def in_sync_report() -> DriftReport:
    report = drifted_report()
    items = tuple(
        replace(item, status=DriftStatus.IN_SYNC, fields=(), note="", since=None)
        for item in report.items
    )
    return replace(report, items=items, unmanaged=())


REPORTS = {"in-sync": in_sync_report, "drifted": drifted_report, "unknown": unknown_report}

# Writes into the DOM what a person cannot see in a screenshot: how wide the content is.
PROBE = """<pre id="probe"></pre><script>
const root = document.documentElement;
const blocks = [...document.querySelectorAll("td, th, h1, h2, p, li, .field, .pair, .meta")];
const right = Math.max(...[...document.querySelectorAll("body *")].map(
  e => e.getBoundingClientRect().right));
document.getElementById("probe").textContent = JSON.stringify({
  clientWidth: root.clientWidth,
  scrollWidth: root.scrollWidth,
  right: right,
  overflowing: blocks.filter(e => e.scrollWidth > e.clientWidth + 1)
    .map(e => e.outerHTML.slice(0, 120)),
});
</script>"""


def probe(page: Path) -> dict[str, object]:
    dom = dump_dom(page, width=WIDTH, height=HEIGHT)
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    result: dict[str, object] = json.loads(html.unescape(found.group(1)))
    return result


# --- the decoder itself, checked against PNGs this file encodes (no browser needed) -----


def encode_png(width: int, rows: list[bytes], channels: int, filters: list[int]) -> bytes:
    """A minimal encoder applying the given filter per row, to exercise every unfilter path."""
    bpp = channels
    raw = bytearray()
    prev = bytes(len(rows[0]))
    for row, kind in zip(rows, filters, strict=True):
        out = bytearray()
        for i, value in enumerate(row):
            left = row[i - bpp] if i >= bpp else 0
            up = prev[i]
            upleft = prev[i - bpp] if i >= bpp else 0
            predictor = [
                0,
                left,
                up,
                (left + up) >> 1,
                _paeth(left, up, upleft),
            ][kind]
            out.append((value - predictor) & 0xFF)
        raw += bytes([kind]) + out
        prev = row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    color = {3: 2, 4: 6}[channels]
    ihdr = struct.pack(">IIBBBBB", width, len(rows), 8, color, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(bytes(raw)))
        + chunk(b"IEND", b"")
    )


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


@pytest.mark.parametrize("channels", [3, 4])
def test_decoder_undoes_every_filter(channels: int) -> None:
    width = 7
    rows = [
        bytes((x * 37 + y * 91 + c * 13) % 256 for x in range(width) for c in range(channels))
        for y in range(10)
    ]
    data = encode_png(width, rows, channels, [0, 1, 2, 3, 4, 4, 3, 2, 1, 0])
    image = decode_png(data)
    assert (image.width, image.height, image.channels) == (width, 10, channels)
    assert image.data == b"".join(rows)
    assert image.pixel(2, 3) == tuple(rows[3][2 * channels : 2 * channels + 3])


def test_decoder_rejects_a_corrupt_chunk() -> None:
    data = bytearray(encode_png(2, [bytes(6), bytes(6)], 3, [0, 0]))
    data[20] ^= 0xFF  # inside IHDR: the CRC no longer matches
    with pytest.raises(ValueError, match="CRC"):
        decode_png(bytes(data))


# --- the page in a real browser -----------------------------------------------------------


@pytest.mark.real
@pytest.mark.parametrize("name", list(REPORTS))
def test_banner_colour_and_width_at_1280(name: str, tmp_path: Path) -> None:
    report = REPORTS[name]()
    page = render_html(report)
    assert "<script" not in page.lower()
    html_file = tmp_path / "drift.html"
    html_file.write_text(page, encoding="utf-8")

    started = time.monotonic()
    png = screenshot(html_file, tmp_path / "drift.png", width=WIDTH, height=HEIGHT)
    took = time.monotonic() - started
    image = decode_png(png.read_bytes())
    assert (image.width, image.height) == (WIDTH, HEIGHT)

    banner = hex_rgb(BANNER_COLORS[report.exit_code])
    top = (0, 0, WIDTH, 100)
    assert image.count(banner, top) > 0.5 * WIDTH * 100, f"banner {banner} not at the top"
    # The banner runs edge to edge, and no other verdict's colour is up there.
    assert image.pixel(2, 5) == banner and image.pixel(WIDTH - 3, 5) == banner
    for code, other in BANNER_COLORS.items():
        if code != report.exit_code:
            assert image.count(hex_rgb(other), top) == 0

    probe_file = tmp_path / "drift-probe.html"
    probe_file.write_text(page.replace("</body>", PROBE + "\n</body>"), encoding="utf-8")
    measured = probe(probe_file)
    assert measured["clientWidth"] == WIDTH, measured  # the probe ran at the asked width
    assert measured["scrollWidth"] == WIDTH, measured  # nothing sticks out sideways
    assert isinstance(measured["right"], int | float) and measured["right"] <= WIDTH, measured
    assert measured["overflowing"] == [], measured
    assert took < 30, f"screenshot took {took:.1f}s"


@pytest.mark.real
def test_probe_sees_a_page_that_is_too_wide(tmp_path: Path) -> None:
    """The width check can fail: the same probe on a page without wrapping reports overflow."""
    page = render_html(drifted_report()).replace("overflow-wrap:anywhere", "overflow-wrap:normal")
    page = page.replace("table-layout:fixed", "table-layout:auto")
    page = page.replace("<td>local</td>", "<td>" + "x" * 400 + "</td>", 1)
    probe_file = tmp_path / "wide.html"
    probe_file.write_text(page.replace("</body>", PROBE + "\n</body>"), encoding="utf-8")
    measured = probe(probe_file)
    assert measured["clientWidth"] == WIDTH
    assert isinstance(measured["scrollWidth"], int) and measured["scrollWidth"] > WIDTH


@pytest.mark.real
def test_escaped_script_shows_as_text(tmp_path: Path) -> None:
    """A guest named `<script>` is shown literally: the browser's DOM holds text, no element."""
    page = tmp_path / "drift.html"
    page.write_text(render_html(unknown_report()), encoding="utf-8")
    dom = dump_dom(page, width=WIDTH, height=HEIGHT)
    assert "<script" not in dom.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
