"""The drift report: what differs from the manifest and since when, rendered four ways.

`reconcile drift` is read-only; this module is its pure half: the model that observation
fills in, and four renderings of it: text for a terminal, JSON for machines (documented in
docs/drift-format.md), Markdown for an issue or a wiki page, and one self-contained HTML
page that can be mailed or served as a file. Every time is an input (`generated_at` anchors
the "for 3h 12m" durations), so a stored report renders the same way next week.

The human renderings list problems first (unknown, missing, drifted), because a lab of fifty
guests with one drifted should not bury it; JSON keeps the report's own order.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from reconcile.core import closures
from reconcile.core.closures import ClosureDiff
from reconcile.core.exits import ExitCode
from reconcile.core.plan.report import unmanaged_counts

FORMAT_VERSION = 1

KINDS = ("guest", "host")
_KIND_TITLES = {"guest": "Guests", "host": "Hosts"}


class DriftStatus(StrEnum):
    IN_SYNC = "in-sync"
    DRIFTED = "drifted"
    MISSING = "missing"
    UNKNOWN = "unknown"  # could not be observed: never reported as in sync
    IGNORED = "ignored"  # differs, but the manifest's ignore patterns accept it

    @property
    def symbol(self) -> str:
        """One ASCII character for a terminal column: problems stand out, sync stays quiet."""
        return _SYMBOLS[self]

    @property
    def label(self) -> str:
        return self.value.replace("-", " ")


_SYMBOLS = {
    DriftStatus.IN_SYNC: "=",
    DriftStatus.DRIFTED: "~",
    DriftStatus.MISSING: "-",
    DriftStatus.UNKNOWN: "?",
    DriftStatus.IGNORED: ".",
}
# Worst first: the order of the human renderings and of their counts.
_SEVERITY = (
    DriftStatus.UNKNOWN,
    DriftStatus.MISSING,
    DriftStatus.DRIFTED,
    DriftStatus.IGNORED,
    DriftStatus.IN_SYNC,
)
_DRIFT = frozenset({DriftStatus.DRIFTED, DriftStatus.MISSING})


@dataclass(frozen=True)
class DriftField:
    """One field that differs; `since` is when it was first seen differing (unix seconds)."""

    field: str
    desired: str
    observed: str
    since: float | None = None


@dataclass(frozen=True)
class DriftItem:
    """One managed object; `where` is a guest's hypervisor or a host's ssh target."""

    kind: str
    name: str
    status: DriftStatus
    fields: tuple[DriftField, ...] = ()
    note: str = ""
    since: float | None = None
    where: str = ""
    closure: ClosureDiff | None = None  # what a system change is (core/closures.py)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"drift item kind must be one of {KINDS}, got {self.kind!r}")


class NoticeLevel(StrEnum):
    WARNING = "warning"
    ERROR = "error"  # the run failed: the report's verdict is an error whatever the items say


@dataclass(frozen=True)
class Notice:
    """A line every rendering shows above the objects: a GitOps cycle that ran unsigned, or
    the stage and error a cycle failed with."""

    level: NoticeLevel
    text: str


@dataclass(frozen=True)
class DriftReport:
    """The lab against its manifest at `generated_at`; `unmanaged` is (hypervisor, domain).

    `observed` is False when the run stopped before observing the lab (a GitOps cycle that
    failed to fetch or load its manifest): `items` is then empty, and says nothing.
    """

    lab: str
    manifest: str
    generated_at: float
    items: tuple[DriftItem, ...]
    unmanaged: tuple[tuple[str, str], ...] = ()
    commit: str = ""
    notices: tuple[Notice, ...] = ()
    observed: bool = True

    @property
    def counts(self) -> dict[DriftStatus, int]:
        """Every status, zero included, so consumers never need a default."""
        counts = dict.fromkeys(DriftStatus, 0)
        for item in self.items:
            counts[item.status] += 1
        return counts

    @property
    def in_sync(self) -> bool:
        """Nothing drifted, missing or unknown; ignored drift and unmanaged domains pass."""
        return self.exit_code is ExitCode.OK

    @property
    def failed(self) -> bool:
        return any(n.level is NoticeLevel.ERROR for n in self.notices)

    @property
    def exit_code(self) -> ExitCode:
        """0 in sync, 2 drift, 1 when anything is unknown.

        Unknown wins over drift: a partial observation is an error to look at before the
        drift it does show, and an unknown object cannot be said to be in sync. A run that
        failed (an error notice) or did not observe the lab is 1 too.
        """
        statuses = {item.status for item in self.items}
        if DriftStatus.UNKNOWN in statuses or self.failed or not self.observed:
            return ExitCode.ERROR
        return ExitCode.CHANGES if statuses & _DRIFT else ExitCode.OK


# --- times -----------------------------------------------------------------------------


def iso_utc(ts: float) -> str:
    """Unix seconds as UTC ISO-8601 to the second: `2024-05-01T08:48:00Z`."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def human_duration(seconds: float) -> str:
    """The two largest units: `42s`, `12m 5s`, `3h 12m`, `2d 4h`."""
    total = max(0, int(seconds))
    units = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    parts: list[str] = []
    for name, size in units:
        amount, total = divmod(total, size)
        if amount or parts:
            parts.append(f"{amount}{name}")
        if len(parts) == 2:
            break
    parts = [p for p in parts if not p.startswith("0")] or ["0s"]
    return " ".join(parts)


def relative(since: float, now: float) -> str:
    """`for 3h 12m` before `now`; a clock ahead of the report says so instead of lying."""
    if since > now:
        return f"{human_duration(since - now)} after this report"
    return f"for {human_duration(now - since)}"


def _since_text(since: float | None, now: float) -> str:
    if since is None:
        return "since unknown"
    return f"since {iso_utc(since)}, {relative(since, now)}"


# --- shared wording ----------------------------------------------------------------------


def _ordered(items: Iterable[DriftItem]) -> list[DriftItem]:
    """Worst first, the report's order within a status (the sort is stable)."""
    return sorted(items, key=lambda item: _SEVERITY.index(item.status))


def _by_kind(report: DriftReport) -> list[tuple[str, list[DriftItem]]]:
    groups = [(kind, _ordered(i for i in report.items if i.kind == kind)) for kind in KINDS]
    return [(kind, items) for kind, items in groups if items]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def headline(report: DriftReport) -> str:
    """The verdict in one or two words, from the exit code."""
    if report.failed:
        return "Failed"
    return {ExitCode.OK: "In sync", ExitCode.CHANGES: "Drifted"}.get(report.exit_code, "Unknown")


def _verdict(report: DriftReport) -> str:
    counts = report.counts
    if not report.observed:
        return "The lab was not observed: the run stopped before it."
    if report.failed and not counts[DriftStatus.UNKNOWN]:
        return "The run failed (see above); the objects below are as observed after it."
    if report.exit_code is ExitCode.ERROR:
        n = counts[DriftStatus.UNKNOWN]
        return (
            f"{_plural(n, 'object')} could not be observed: the lab cannot be said to be in sync."
        )
    if report.exit_code is ExitCode.CHANGES:
        n = counts[DriftStatus.DRIFTED] + counts[DriftStatus.MISSING]
        verb = "differs" if n == 1 else "differ"
        return f"{_plural(n, 'object')} {verb} from the manifest."
    if not report.items:
        return "The manifest manages no objects."
    return f"Lab '{report.lab}' matches its manifest."


def _count_parts(report: DriftReport) -> list[str]:
    counts = report.counts
    parts = [f"{counts[s]} {s.label}" for s in _SEVERITY if counts[s]]
    if report.unmanaged:
        parts.append(f"{len(report.unmanaged)} unmanaged")
    return parts or ["no objects"]


def _show(value: str) -> str:
    return value if value else "(none)"


def _origin(report: DriftReport) -> str:
    commit = f" at commit {report.commit}" if report.commit else ""
    return f"manifest {report.manifest}{commit}, observed {iso_utc(report.generated_at)}"


# --- text ------------------------------------------------------------------------------


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_NAMES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _t(value: str) -> str:
    """One terminal-safe line: a newline or an escape sequence in a value is shown, not obeyed."""
    return _CONTROL.sub(lambda m: _CONTROL_NAMES.get(m.group(), f"\\x{ord(m.group()):02x}"), value)


def _item_text(item: DriftItem, now: float) -> list[str]:
    where = f" on {_t(item.where)}" if item.kind == "guest" else f" ({_t(item.where)})"
    head = f"  {item.status.symbol} {item.kind} {_t(item.name)}{where if item.where else ''}"
    head += f": {item.status.label}"
    if item.since is not None and item.status is not DriftStatus.IN_SYNC:
        head += f" {relative(item.since, now)} (since {iso_utc(item.since)})"
    lines = [head]
    width = max((len(_t(f.field)) for f in item.fields), default=0)
    for f in item.fields:
        change = f"{_t(_show(f.desired))} -> {_t(_show(f.observed))}"
        lines.append(f"      {_t(f.field).ljust(width)}: {change} ({_since_text(f.since, now)})")
    if item.closure is not None:
        lines += [_t(line) for line in closures.text_lines(item.closure)]
    if item.note:
        lines.append(f"      ({_t(item.note)})")
    return lines


def render_text(report: DriftReport, *, show_unmanaged: bool = False) -> str:
    """For a terminal: an object a line, its fields indented, the unmanaged domains (a count
    per hypervisor, or each with `show_unmanaged`), a summary."""
    now = report.generated_at
    out = [
        f"Drift of lab '{_t(report.lab)}': {_t(_origin(report))}.",
        "Fields read desired -> observed.",
        "",
    ]
    for notice in report.notices:
        first, *rest = notice.text.splitlines() or [""]
        out.append(f"{notice.level.value}: {_t(first)}")
        out += [f"  {_t(line)}" for line in rest]
    if report.notices:
        out.append("")
    for kind, items in _by_kind(report):
        out.append(f"{_KIND_TITLES[kind]}:")
        for item in items:
            out += _item_text(item, now)
        out.append("")
    if report.unmanaged and show_unmanaged:
        out.append("Unmanaged domains (not in the manifest; never touched):")
        out += [f"  {_t(domain)} on {_t(hv)}" for hv, domain in report.unmanaged]
        out.append("")
    elif report.unmanaged:
        out += [_t(line) for line in unmanaged_counts(report.unmanaged)] + [""]
    out.append(f"{headline(report)}: {', '.join(_count_parts(report))}. {_t(_verdict(report))}")
    return "\n".join(out) + "\n"


# --- JSON ------------------------------------------------------------------------------


def _iso_or_none(ts: float | None) -> str | None:
    return None if ts is None else iso_utc(ts)


def _item_json(item: DriftItem) -> dict[str, Any]:
    doc = _item_fields_json(item)
    if item.closure is not None:  # only for a system change (docs/drift-format.md)
        doc["closure"] = closures.document(item.closure)
    return doc


def _item_fields_json(item: DriftItem) -> dict[str, Any]:
    return {
        "kind": item.kind,
        "name": item.name,
        "status": item.status.value,
        "where": item.where,
        "note": item.note,
        "since": item.since,
        "since_iso": _iso_or_none(item.since),
        "fields": [
            {
                "field": f.field,
                "desired": f.desired,
                "observed": f.observed,
                "since": f.since,
                "since_iso": _iso_or_none(f.since),
            }
            for f in item.fields
        ],
    }


def render_json(report: DriftReport) -> dict[str, Any]:
    """The stable document of docs/drift-format.md; `format_version` changes with meaning."""
    return {
        "format_version": FORMAT_VERSION,
        "lab": report.lab,
        "manifest": report.manifest,
        "commit": report.commit,
        "generated_at": report.generated_at,
        "generated_at_iso": iso_utc(report.generated_at),
        "in_sync": report.in_sync,
        "exit_code": report.exit_code,
        "summary": {status.value: n for status, n in report.counts.items()},
        "observed": report.observed,
        "notices": [{"level": n.level.value, "text": n.text} for n in report.notices],
        "items": [_item_json(item) for item in report.items],
        "unmanaged": [{"hypervisor": hv, "domain": d} for hv, d in report.unmanaged],
    }


# --- Markdown --------------------------------------------------------------------------

# Every ASCII character that can start markup inside a GFM table cell; CommonMark lets any
# ASCII punctuation be backslash-escaped, so a value always reads literally.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|&~!])")


def md_escape(value: str) -> str:
    """A value safe inside a Markdown table cell: markup escaped, line breaks as `<br>`."""
    escaped = _MD_SPECIAL.sub(r"\\\1", value)
    return "<br>".join(escaped.replace("\r\n", "\n").replace("\r", "\n").split("\n"))


def _md_differs(item: DriftItem, now: float) -> str:
    lines = []
    if item.closure is not None:
        lines.append(md_escape(closures.text_lines(item.closure, indent="")[0]))
    for f in item.fields:
        line = (
            f"{md_escape(f.field)}: {md_escape(_show(f.desired))} → {md_escape(_show(f.observed))}"
        )
        if f.since is not None and f.since != item.since:
            line += f" ({relative(f.since, now)})"
        lines.append(line)
    if item.note:
        lines.append(f"*{md_escape(item.note)}*")
    return "<br>".join(lines) or "—"


def _md_since(since: float | None, now: float) -> str:
    if since is None:
        return "—"
    return f"{iso_utc(since)} ({relative(since, now)})"


def render_markdown(report: DriftReport) -> str:
    """A summary, then a table per kind; values escaped so a name can never become markup."""
    now = report.generated_at
    out = [
        f"# Drift: lab {md_escape(report.lab)}",
        "",
        f"**{headline(report)}**: {md_escape(', '.join(_count_parts(report)))}. "
        f"{md_escape(_verdict(report))} Exit code {report.exit_code}.",
        "",
        f"Manifest {md_escape(report.manifest)}"
        + (f", commit {md_escape(report.commit)}" if report.commit else "")
        + f", observed {iso_utc(now)}. What differs reads *field: desired → observed*.",
    ]
    for notice in report.notices:
        out += ["", f"> **{notice.level.value}**: {md_escape(notice.text)}"]
    for kind, items in _by_kind(report):
        out += ["", f"## {_KIND_TITLES[kind]}", ""]
        out += ["| name | status | where | what differs | since |", "|---|---|---|---|---|"]
        for item in items:
            since = _md_since(item.since, now) if item.status is not DriftStatus.IN_SYNC else "—"
            cells = [
                md_escape(item.name),
                item.status.label,
                md_escape(item.where),
                _md_differs(item, now),
                since,
            ]
            out.append("| " + " | ".join(cells) + " |")
    if report.unmanaged:
        out += ["", "## Unmanaged domains", ""]
        out.append("Not in the manifest and without this lab's mark: never touched.")
        out += ["", "| hypervisor | domain |", "|---|---|"]
        out += [f"| {md_escape(hv)} | {md_escape(d)} |" for hv, d in report.unmanaged]
    return "\n".join(out) + "\n"


# --- HTML ------------------------------------------------------------------------------

# The banner's background by exit code; tests look for these colours in a screenshot.
BANNER_COLORS: Mapping[ExitCode, str] = {
    ExitCode.OK: "#1f7a3a",
    ExitCode.CHANGES: "#f2a100",
    ExitCode.ERROR: "#c62828",
}
_BANNER_CLASS = {ExitCode.OK: "ok", ExitCode.CHANGES: "drift", ExitCode.ERROR: "unknown"}
# Values up to this length sit on one line as `desired → observed`; longer ones stack.
_INLINE_MAX = 28

_CSS = """
*{box-sizing:border-box}
html{color-scheme:light}
body{margin:0;background:#fff;color:#1f2328;overflow-wrap:anywhere;
 font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif}
.wrap{max-width:1240px;margin:0 auto;padding:0 20px}
.banner{padding:18px 0 14px;color:#fff}
.banner.drift{color:#1f2328}
.banner h1{margin:0;font-size:24px;line-height:1.2}
.banner .verdict{margin:4px 0 10px;font-size:15px}
.counts{display:flex;flex-wrap:wrap;gap:8px;margin:0 0 10px;padding:0;list-style:none}
.counts li{background:rgba(255,255,255,.22);border-radius:12px;padding:2px 10px;font-weight:600}
.banner.drift .counts li{background:rgba(255,255,255,.45)}
.counts li.zero{opacity:.55;font-weight:400}
.meta{font-size:13px;opacity:.92}
h2{font-size:18px;margin:26px 0 8px}
table{width:100%;border-collapse:collapse;table-layout:fixed}
th,td{text-align:left;vertical-align:top;padding:7px 10px;border-bottom:1px solid #d8dee4;
 overflow-wrap:anywhere}
th{background:#f6f8fa;font-size:13px;font-weight:600;border-bottom:2px solid #d0d7de}
tr.problem td{background:#fffbf0}
tr.unknown td{background:#fff5f5}
td.name{font-weight:600}
col.name{width:15%} col.status{width:9%} col.where{width:17%} col.differs{width:42%}
col.since{width:17%} col.hv{width:25%}
.pill{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;font-weight:600;
 white-space:nowrap}
.pill.in-sync{background:#dafbe1;color:#116329}
.pill.drifted{background:#fff1c2;color:#7a4d00}
.pill.missing{background:#ffe0c7;color:#8a3300}
.pill.unknown{background:#ffd8d6;color:#a40e26}
.pill.ignored{background:#eaeef2;color:#57606a}
code{font:12.5px/1.45 ui-monospace,"DejaVu Sans Mono",Menlo,monospace;white-space:pre-wrap;
 overflow-wrap:anywhere}
.field{margin:0 0 8px}
.field:last-child{margin-bottom:0}
.fname{font-weight:600}
.arrow{color:#57606a;padding:0 4px}
.pair{display:grid;grid-template-columns:72px minmax(0,1fr);column-gap:6px}
.lbl{color:#57606a;font-size:12px;padding-top:1px}
.fsince{color:#57606a;font-size:12px}
.note{color:#57606a;font-style:italic;white-space:pre-line}
tr.unknown .note{color:#a40e26}
.when{display:block;color:#57606a;font-size:12px}
.quiet{color:#8c959f}
.notice{margin:14px 0 0;padding:10px 14px;border-radius:6px;white-space:pre-line}
.notice.warning{background:#fff8c5;border:1px solid #d4a72c}
.notice.error{background:#ffebe9;border:1px solid #cf222e}
footer{margin:28px 0 20px;color:#8c959f;font-size:12px}
""" + "".join(
    f".banner.{_BANNER_CLASS[code]}{{background:{c}}}\n" for code, c in BANNER_COLORS.items()
)


def _e(value: str) -> str:
    return html.escape(value, quote=True)


_ROW_CLASS = {
    DriftStatus.UNKNOWN: "unknown",
    DriftStatus.MISSING: "problem",
    DriftStatus.DRIFTED: "problem",
}


def _html_field(f: DriftField, item: DriftItem, now: float) -> str:
    since = ""
    if f.since is not None and f.since != item.since:
        since = f' <span class="fsince">{_e(relative(f.since, now))}</span>'
    desired, observed = _e(_show(f.desired)), _e(_show(f.observed))
    if len(f.desired) <= _INLINE_MAX and len(f.observed) <= _INLINE_MAX:
        return (
            f'<div class="field"><span class="fname">{_e(f.field)}</span> '
            f'<code>{desired}</code><span class="arrow">→</span><code>{observed}</code>'
            f"{since}</div>"
        )
    return (
        f'<div class="field"><div class="fname">{_e(f.field)}{since}</div>'
        f'<div class="pair"><span class="lbl">desired</span><code>{desired}</code></div>'
        f'<div class="pair"><span class="lbl">observed</span><code>{observed}</code></div></div>'
    )


def _html_row(item: DriftItem, now: float) -> str:
    differs = "".join(_html_field(f, item, now) for f in item.fields)
    if item.closure is not None:
        summary = closures.text_lines(item.closure, indent="")[0]
        differs += f'<div class="note">{_e(summary)}</div>'
    if item.note:
        differs += f'<div class="note">{_e(item.note)}</div>'
    if not differs:
        differs = '<span class="quiet">—</span>'
    if item.since is None or item.status is DriftStatus.IN_SYNC:
        since = '<span class="quiet">—</span>'
    else:
        since = f'{iso_utc(item.since)}<span class="when">{_e(relative(item.since, now))}</span>'
    row_class = _ROW_CLASS.get(item.status, "ok")
    return (
        f'<tr class="{row_class}"><td class="name">{_e(item.name)}</td>'
        f'<td><span class="pill {item.status.value}">{item.status.label}</span></td>'
        f"<td>{_e(item.where)}</td><td>{differs}</td><td>{since}</td></tr>"
    )


def _html_table(kind: str, items: list[DriftItem], now: float) -> str:
    where = "hypervisor" if kind == "guest" else "ssh target"
    rows = "\n".join(_html_row(item, now) for item in items)
    return (
        f"<h2>{_KIND_TITLES[kind]} ({len(items)})</h2>\n<table>"
        '<colgroup><col class="name"><col class="status"><col class="where">'
        '<col class="differs"><col class="since"></colgroup>\n'
        f"<thead><tr><th>name</th><th>status</th><th>{where}</th>"
        "<th>what differs (desired → observed)</th><th>since</th></tr></thead>\n"
        f"<tbody>\n{rows}\n</tbody></table>"
    )


def _html_unmanaged(report: DriftReport) -> str:
    if not report.unmanaged:
        return ""
    rows = "\n".join(
        f"<tr><td>{_e(hv)}</td><td>{_e(domain)}</td></tr>" for hv, domain in report.unmanaged
    )
    return (
        f"<h2>Unmanaged domains ({len(report.unmanaged)})</h2>\n"
        "<p>Not in the manifest and without this lab's mark: reconcile never touches them.</p>\n"
        '<table><colgroup><col class="hv"><col></colgroup>\n'
        "<thead><tr><th>hypervisor</th><th>domain</th></tr></thead>\n"
        f"<tbody>\n{rows}\n</tbody></table>"
    )


_ZERO = ' class="zero"'


def _html_banner(report: DriftReport) -> str:
    counts = report.counts
    shown = [(counts[s], s.label) for s in _SEVERITY] + [(len(report.unmanaged), "unmanaged")]
    chips = [f"<li{'' if n else _ZERO}>{n} {label}</li>" for n, label in shown]
    commit = f" · commit <code>{_e(report.commit)}</code>" if report.commit else ""
    return (
        f'<header class="banner {_BANNER_CLASS[report.exit_code]}"><div class="wrap">\n'
        f"<h1>{_e(headline(report))} · lab {_e(report.lab)}</h1>\n"
        f'<p class="verdict">{_e(_verdict(report))}</p>\n'
        f'<ul class="counts">{"".join(chips)}</ul>\n'
        f'<div class="meta">manifest <code>{_e(report.manifest)}</code>{commit}'
        f" · observed {iso_utc(report.generated_at)} · exit code {report.exit_code}</div>\n"
        "</div></header>"
    )


def render_html(report: DriftReport) -> str:
    """One self-contained page: inline CSS, no script, no external resource, no sideways scroll.

    Long values (store paths) wrap anywhere inside fixed-layout tables, so the page reads at
    1280 px whatever the manifest holds; every value is escaped.
    """
    now = report.generated_at
    tables = "\n".join(_html_table(kind, items, now) for kind, items in _by_kind(report))
    if not report.items:
        tables = "<p>The manifest manages no guests or hosts.</p>"
    if not report.observed:
        tables = "<p>The lab was not observed.</p>"
    notices = "".join(
        f'<p class="notice {n.level.value}"><strong>{n.level.value}:</strong> {_e(n.text)}</p>\n'
        for n in report.notices
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(headline(report))}: drift of lab {_e(report.lab)}</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n"
        f"{_html_banner(report)}\n"
        f'<main class="wrap">\n{notices}{tables}\n{_html_unmanaged(report)}\n'
        f"<footer>reconcile drift · format {FORMAT_VERSION} · "
        f"generated {iso_utc(now)}</footer>\n</main>\n</body>\n</html>\n"
    )
