"""The drift report's model and renderings: verdicts, stable JSON, and values that stay values."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from html.parser import HTMLParser

import pytest

from reconcile.core.drift.report import (
    BANNER_COLORS,
    FORMAT_VERSION,
    DriftField,
    DriftItem,
    DriftReport,
    DriftStatus,
    human_duration,
    iso_utc,
    md_escape,
    relative,
    render_html,
    render_json,
    render_markdown,
    render_text,
)
from tests.conftest import ROOT

NOW = 1_714_564_800.0  # 2024-05-01T12:00:00Z
SINCE = NOW - 3 * 3600 - 12 * 60
STORE_A = "/nix/store/" + "a" * 32 + "-nixos-system-db-24.05"
STORE_B = "/nix/store/" + "b" * 32 + "-nixos-system-db-24.05"


def report(*items: DriftItem, unmanaged: tuple[tuple[str, str], ...] = ()) -> DriftReport:
    return DriftReport(
        lab="demo",
        manifest="manifests/demo.toml",
        generated_at=NOW,
        items=items,
        unmanaged=unmanaged,
        commit="abc1234",
    )


WEB = DriftItem("guest", "web", DriftStatus.IN_SYNC, where="local")
BOX = DriftItem("host", "box", DriftStatus.IN_SYNC, where="root@10.0.0.5:22")
DB = DriftItem(
    "guest",
    "db",
    DriftStatus.DRIFTED,
    fields=(
        DriftField("system", STORE_A, STORE_B, SINCE),
        DriftField("memory", "640 MiB", "512 MiB", NOW - 600),
    ),
    since=SINCE,
    where="local",
)
CACHE = DriftItem("guest", "cache", DriftStatus.MISSING, note="domain absent", where="local")
LOST = DriftItem(
    "host",
    "lost",
    DriftStatus.UNKNOWN,
    note="ssh unreachable: root@10.0.0.9:22: timed out",
    where="root@10.0.0.9:22",
)
QUIET = DriftItem(
    "guest",
    "quiet",
    DriftStatus.IGNORED,
    fields=(DriftField("vcpus", "2", "4", SINCE),),
    since=SINCE,
    where="local",
)

IN_SYNC = report(WEB, BOX)
DRIFTED = report(WEB, DB, CACHE, BOX, unmanaged=(("local", "scratch-vm"),))
UNKNOWN = report(WEB, DB, LOST)
EVIL_NAME = "<script>alert(1)</script> | two\nlines"
EVIL = report(
    DriftItem(
        "guest",
        EVIL_NAME,
        DriftStatus.DRIFTED,
        fields=(DriftField("cmdline", "a|b", "c\nd", None),),
        note="x & y",
        where="local",
    ),
    unmanaged=(("local", "<b>bold</b>"),),
)


# --- the model --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("items", "code"),
    [
        ((), 0),
        ((WEB, BOX), 0),
        ((WEB, QUIET), 0),
        ((WEB, DB), 2),
        ((WEB, CACHE), 2),
        ((WEB, LOST), 1),
        ((DB, CACHE, LOST), 1),
    ],
    ids=["empty", "in-sync", "ignored", "drifted", "missing", "unknown", "unknown-wins"],
)
def test_exit_code_and_in_sync(items: tuple[DriftItem, ...], code: int) -> None:
    made = report(*items)
    assert made.exit_code == code
    assert made.in_sync is (code == 0)


def test_unmanaged_domains_do_not_make_drift() -> None:
    assert report(WEB, unmanaged=(("local", "scratch"),)).exit_code == 0


def test_counts_name_every_status() -> None:
    counts = report(WEB, DB, CACHE, LOST, QUIET, BOX).counts
    assert counts == {
        DriftStatus.IN_SYNC: 2,
        DriftStatus.DRIFTED: 1,
        DriftStatus.MISSING: 1,
        DriftStatus.UNKNOWN: 1,
        DriftStatus.IGNORED: 1,
    }
    assert set(IN_SYNC.counts) == set(DriftStatus)


def test_status_values() -> None:
    assert [s.value for s in DriftStatus] == ["in-sync", "drifted", "missing", "unknown", "ignored"]


def test_item_kind_is_checked() -> None:
    with pytest.raises(ValueError, match="kind"):
        DriftItem("vm", "web", DriftStatus.IN_SYNC)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (42, "42s"),
        (12 * 60 + 5, "12m 5s"),
        (3 * 3600, "3h"),
        (3 * 3600 + 12 * 60 + 59, "3h 12m"),
        (2 * 86400 + 4 * 3600 + 60, "2d 4h"),
        (86400 + 30, "1d"),
        (-5, "0s"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_times() -> None:
    assert iso_utc(NOW) == "2024-05-01T12:00:00Z"
    assert relative(SINCE, NOW) == "for 3h 12m"
    assert relative(NOW + 90, NOW) == "1m 30s after this report"


# --- text ---------------------------------------------------------------------------------


def test_text_in_sync() -> None:
    text = render_text(IN_SYNC)
    assert "  = guest web on local: in sync" in text
    assert "  = host box (root@10.0.0.5:22): in sync" in text
    assert text.splitlines()[-1] == "In sync: 2 in sync. Lab 'demo' matches its manifest."


def test_text_drifted() -> None:
    lines = render_text(DRIFTED).splitlines()
    assert lines[0] == (
        "Drift of lab 'demo': manifest manifests/demo.toml at commit abc1234, "
        "observed 2024-05-01T12:00:00Z."
    )
    # Worst first within a kind: missing, then drifted, then in sync.
    guests = [line for line in lines if line.startswith("  ") and " guest " in line]
    assert [g.split()[2] for g in guests] == ["cache", "db", "web"]
    assert "  ~ guest db on local: drifted for 3h 12m (since 2024-05-01T08:48:00Z)" in lines
    assert f"      system: {STORE_A} -> {STORE_B} (since 2024-05-01T08:48:00Z, for 3h 12m)" in lines
    assert "      memory: 640 MiB -> 512 MiB (since 2024-05-01T11:50:00Z, for 10m)" in lines
    assert "      (domain absent)" in lines
    # unmanaged domains are counted per hypervisor; --show-unmanaged lists them
    assert "1 domain on local is not this lab's (never touched; --show-unmanaged lists it)" in lines
    assert "scratch-vm" not in "\n".join(lines)
    shown = render_text(DRIFTED, show_unmanaged=True).splitlines()
    assert shown[shown.index("Unmanaged domains (not in the manifest; never touched):") + 1] == (
        "  scratch-vm on local"
    )
    assert lines[-1] == shown[-1]
    assert lines[-1] == (
        "Drifted: 1 missing, 1 drifted, 2 in sync, 1 unmanaged. 2 objects differ from the manifest."
    )


def test_text_counts_unmanaged_domains_per_hypervisor_and_escapes_their_names() -> None:
    many = (*(("local", f"foreign-{i:04d}") for i in range(1000)), ("hv\x1b2", "x"))
    text = render_text(report(WEB, unmanaged=many))
    assert "1000 domains on local are not this lab's (never touched; " in text
    assert "1 domain on hv\\x1b2 is not this lab's" in text  # a control character, escaped
    assert "foreign-" not in text and len(text.splitlines()) < 12
    shown = render_text(report(WEB, unmanaged=many), show_unmanaged=True)
    assert sum(1 for line in shown.splitlines() if line.startswith("  foreign-")) == 1000


def test_text_unknown() -> None:
    text = render_text(UNKNOWN)
    assert "  ? host lost (root@10.0.0.9:22): unknown\n" in text
    assert "      (ssh unreachable: root@10.0.0.9:22: timed out)\n" in text
    assert text.splitlines()[-1].startswith("Unknown: 1 unknown, 1 drifted, 1 in sync. 1 object")


def test_text_shows_control_characters_instead_of_obeying_them() -> None:
    text = render_text(EVIL)
    assert "\x1b" not in text
    assert "two\\nlines" in text
    assert "c\\nd" in text
    item = report(replace(WEB, note="red \x1b[31m"))
    assert "red \\x1b[31m" in render_text(item)


# --- JSON ---------------------------------------------------------------------------------

TOP_KEYS = [
    "format_version",
    "lab",
    "manifest",
    "commit",
    "generated_at",
    "generated_at_iso",
    "in_sync",
    "exit_code",
    "summary",
    "observed",
    "notices",
    "items",
    "unmanaged",
]
ITEM_KEYS = ["kind", "name", "status", "where", "note", "since", "since_iso", "fields"]
FIELD_KEYS = ["field", "desired", "observed", "since", "since_iso"]


@pytest.mark.parametrize("made", [IN_SYNC, DRIFTED, UNKNOWN], ids=["in-sync", "drifted", "unknown"])
def test_json_keys_are_stable(made: DriftReport) -> None:
    doc = render_json(made)
    assert list(doc) == TOP_KEYS
    assert doc["format_version"] == FORMAT_VERSION == 1
    assert list(doc["summary"]) == [s.value for s in DriftStatus]
    for item in doc["items"]:
        assert list(item) == ITEM_KEYS
        for field in item["fields"]:
            assert list(field) == FIELD_KEYS
    assert json.loads(json.dumps(doc)) == doc


def test_verdict_agrees_in_number() -> None:
    assert render_text(report(DB)).splitlines()[-1].endswith("1 object differs from the manifest.")


def test_json_in_sync() -> None:
    doc = render_json(IN_SYNC)
    assert (doc["in_sync"], doc["exit_code"]) == (True, 0)
    assert doc["summary"]["in-sync"] == 2
    assert doc["unmanaged"] == []


def test_json_drifted() -> None:
    doc = render_json(DRIFTED)
    assert (doc["in_sync"], doc["exit_code"]) == (False, 2)
    db = next(i for i in doc["items"] if i["name"] == "db")
    assert db["status"] == "drifted"
    assert db["since"] == SINCE and db["since_iso"] == "2024-05-01T08:48:00Z"
    assert db["fields"][0] == {
        "field": "system",
        "desired": STORE_A,
        "observed": STORE_B,
        "since": SINCE,
        "since_iso": "2024-05-01T08:48:00Z",
    }
    # The report's own order, not the worst-first order of the human renderings.
    assert [i["name"] for i in doc["items"]] == ["web", "db", "cache", "box"]
    assert doc["unmanaged"] == [{"hypervisor": "local", "domain": "scratch-vm"}]


def test_json_unknown() -> None:
    doc = render_json(UNKNOWN)
    assert (doc["in_sync"], doc["exit_code"]) == (False, 1)
    lost = doc["items"][-1]
    assert (lost["status"], lost["since"], lost["since_iso"]) == ("unknown", None, None)
    assert lost["note"].startswith("ssh unreachable")


def test_json_format_is_documented() -> None:
    doc = (ROOT / "docs" / "drift-format.md").read_text()
    for key in TOP_KEYS + ITEM_KEYS + FIELD_KEYS:
        assert f"`{key}" in doc or f"{key}`" in doc or f'"{key}"' in doc, key
    for status in DriftStatus:
        assert f"`{status.value}`" in doc
    for code in (0, 1, 2):
        assert f"| `{code}` |" in doc


# --- Markdown -------------------------------------------------------------------------------


def _table_rows(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("| ")]


def _cells(row: str) -> int:
    """Cells in a GFM table row: pipes not escaped by a backslash."""
    return len(re.findall(r"(?<!\\)\|", row)) - 1


def test_markdown_in_sync() -> None:
    md = render_markdown(IN_SYNC)
    assert md.startswith("# Drift: lab demo\n")
    assert "**In sync**: 2 in sync." in md
    assert "## Guests" in md and "## Hosts" in md
    assert "| web | in sync | local | — | — |" in md
    assert "Unmanaged" not in md


def test_markdown_drifted() -> None:
    md = render_markdown(DRIFTED)
    assert "**Drifted**: 1 missing, 1 drifted, 2 in sync, 1 unmanaged." in md
    assert "Exit code 2." in md
    assert "| name | status | where | what differs | since |" in md
    db = next(r for r in _table_rows(md) if r.startswith("| db |"))
    assert f"system: {md_escape(STORE_A)} → {md_escape(STORE_B)}<br>" in db
    assert "memory: 640 MiB → 512 MiB (for 10m)" in db
    assert db.endswith("| 2024-05-01T08:48:00Z (for 3h 12m) |")
    assert "| cache | missing | local | *domain absent* | — |" in md
    assert "## Unmanaged domains" in md and "| local | scratch-vm |" in md


def test_markdown_unknown() -> None:
    md = render_markdown(UNKNOWN)
    assert "**Unknown**: 1 unknown" in md
    assert (
        "| lost | unknown | root@10.0.0.9:22 | *ssh unreachable: root@10.0.0.9:22: timed out* |"
        in md
    )


def test_markdown_escapes_pipes_newlines_and_html() -> None:
    md = render_markdown(EVIL)
    rows = _table_rows(md)
    assert [_cells(row) for row in rows] == [5, 5, 2, 2]  # guests head and row, unmanaged
    assert "<script>" not in md and "<b>" not in md
    assert "\\<script\\>alert(1)\\</script\\> \\| two<br>lines" in md
    assert "cmdline: a\\|b → c<br>d" in md
    assert "x \\& y" in md
    # Nothing but the table's own `<br>` survives as a raw tag.
    assert set(re.findall(r"(?<!\\)<[a-z/]+", md)) <= {"<br"}


def test_md_escape_keeps_plain_text_plain() -> None:
    assert md_escape("web-01.lab") == "web-01.lab"
    assert md_escape(r"a\b") == r"a\\b"
    assert md_escape("a_b*c`d") == r"a\_b\*c\`d"


# --- HTML -------------------------------------------------------------------------------------


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.text: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> _Tags:
    parser = _Tags()
    parser.feed(page)
    parser.close()
    return parser


@pytest.mark.parametrize(
    ("made", "css_class", "headline"),
    [(IN_SYNC, "ok", "In sync"), (DRIFTED, "drift", "Drifted"), (UNKNOWN, "unknown", "Unknown")],
    ids=["in-sync", "drifted", "unknown"],
)
def test_html_page(made: DriftReport, css_class: str, headline: str) -> None:
    page = render_html(made)
    assert page.startswith("<!DOCTYPE html>\n")
    assert '<meta charset="utf-8">' in page
    assert f'<header class="banner {css_class}">' in page
    assert f"<h1>{headline} · lab demo</h1>" in page
    assert f".banner.{css_class}{{background:{BANNER_COLORS[made.exit_code]}}}" in page
    parsed = parse(page)
    # Self-contained: no script, no link, nothing fetched.
    assert not {"script", "link", "img", "iframe", "object"} & set(parsed.tags)
    assert not any(name in {"src", "href"} for name, _ in parsed.attrs)
    assert "url(" not in page and "@import" not in page
    # Long values wrap instead of widening the page.
    assert "table-layout:fixed" in page and "overflow-wrap:anywhere" in page
    assert parsed.tags.count("table") == 2 + bool(made.unmanaged)


def test_html_drifted_content() -> None:
    page = render_html(DRIFTED)
    text = " ".join(parse(page).text)
    for count in ("0 unknown", "1 missing", "1 drifted", "0 ignored", "2 in sync", "1 unmanaged"):
        assert count in text
    assert "Guests (3)" in text and "Hosts (1)" in text and "Unmanaged domains (1)" in text
    assert STORE_A in text and STORE_B in text
    assert "2024-05-01T08:48:00Z" in text and "for 3h 12m" in text
    assert '<span class="pill missing">missing</span>' in page
    assert page.index(">cache<") < page.index(">db<") < page.index(">web<")


def test_html_unknown_content() -> None:
    page = render_html(UNKNOWN)
    assert '<tr class="unknown"><td class="name">lost</td>' in page
    assert "ssh unreachable: root@10.0.0.9:22: timed out" in page
    assert "could not be observed" in page


def test_html_escapes_every_value() -> None:
    page = render_html(EVIL)
    parsed = parse(page)
    assert "script" not in parsed.tags and "b" not in parsed.tags
    assert "&lt;script&gt;alert(1)&lt;/script&gt; | two\nlines" in page
    assert EVIL_NAME in "".join(parsed.text)
    assert "x &amp; y" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page


def test_empty_report_renders() -> None:
    empty = report()
    assert "The manifest manages no objects." in render_text(empty)
    assert "no guests or hosts" in render_html(empty)
    assert "## Guests" not in render_markdown(empty)
    assert render_json(empty)["items"] == []
