"""Metrics text: escaping, and every output read back by a strict parser of format 0.0.4."""

from __future__ import annotations

import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconcile.adapters.files import write_atomic
from reconcile.core.errors import ReconcileError
from reconcile.core.metrics import Metric, Sample, escape_label_value, render_metrics

# A strict reader of the text exposition format 0.0.4, written from the format's rules
# (https://prometheus.io/docs/instrumenting/exposition_formats/), limited to what
# node_exporter's textfile collector accepts: no timestamps.

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
VALUE = re.compile(r"[+-]?(Inf|NaN|[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]+)?|\.[0-9]+([eE][+-]?[0-9]+)?)")


class FormatError(Exception):
    pass


@dataclass
class Family:
    help: str | None = None
    type: str | None = None
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)


def parse(text: str) -> dict[str, Family]:
    if text and not text.endswith("\n"):
        raise FormatError("the last line must end with a newline")
    families: dict[str, Family] = {}
    finished: set[str] = set()
    current: str | None = None
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()

    def enter(name: str) -> Family:
        nonlocal current
        if name != current:
            if name in finished or (name in families and name != current):
                raise FormatError(f"{name}: its lines are not one group")
            if current is not None:
                finished.add(current)
            current = name
        return families.setdefault(name, Family())

    for number, line in enumerate(text.split("\n")[:-1], 1):
        where = f"line {number}: {line!r}"
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in {"HELP", "TYPE"}:
                keyword, name = parts[1], parts[2]
                if not NAME.fullmatch(name):
                    raise FormatError(f"{where}: bad metric name")
                family = enter(name)
                if family.samples:
                    raise FormatError(f"{where}: {keyword} after samples")
                rest = parts[3] if len(parts) == 4 else ""
                if keyword == "HELP":
                    if family.help is not None:
                        raise FormatError(f"{where}: second HELP")
                    family.help = unescape(rest, quotes=False, where=where)
                else:
                    if family.type is not None:
                        raise FormatError(f"{where}: second TYPE")
                    if rest not in TYPES:
                        raise FormatError(f"{where}: unknown type")
                    family.type = rest
            continue  # any other comment is ignored
        name, labels, value = parse_sample(line, where)
        family = enter(name)
        key = (name, tuple(sorted(labels.items())))
        if key in seen:
            raise FormatError(f"{where}: duplicate sample")
        seen.add(key)
        family.samples.append((labels, value))
    return families


def parse_sample(line: str, where: str) -> tuple[str, dict[str, str], float]:
    match = NAME.match(line)
    if not match:
        raise FormatError(f"{where}: bad metric name")
    name, pos = match.group(), match.end()
    labels: dict[str, str] = {}
    if line[pos : pos + 1] == "{":
        pos += 1
        while line[pos : pos + 1] != "}":
            label = LABEL.match(line, pos)
            if not label or label.group().startswith("__"):
                raise FormatError(f"{where}: bad label name at {pos}")
            pos = label.end()
            if line[pos : pos + 2] != '="':
                raise FormatError(f'{where}: expected =" at {pos}')
            pos += 2
            raw = []
            while True:
                if pos >= len(line):
                    raise FormatError(f"{where}: unterminated label value")
                char = line[pos]
                if char == '"':
                    break
                if char == "\\":
                    raw.append(line[pos : pos + 2])
                    pos += 2
                else:
                    raw.append(char)
                    pos += 1
            pos += 1
            if label.group() in labels:
                raise FormatError(f"{where}: label {label.group()} twice")
            labels[label.group()] = unescape("".join(raw), quotes=True, where=where)
            if line[pos : pos + 1] == ",":
                pos += 1
            elif line[pos : pos + 1] != "}":
                raise FormatError(f"{where}: expected , or }} at {pos}")
        pos += 1
    if line[pos : pos + 1] != " ":
        raise FormatError(f"{where}: expected one space before the value")
    fields = line[pos + 1 :].split(" ")
    if len(fields) != 1 or not VALUE.fullmatch(fields[0]):
        raise FormatError(f"{where}: the value must be one float, no timestamp")
    return name, labels, float(fields[0])


def unescape(text: str, *, quotes: bool, where: str) -> str:
    escapes = {"\\": "\\", "n": "\n"} | ({'"': '"'} if quotes else {})
    out, pos = [], 0
    while pos < len(text):
        if text[pos] == "\\":
            nxt = text[pos + 1 : pos + 2]
            if nxt not in escapes:
                raise FormatError(f"{where}: bad escape \\{nxt}")
            out.append(escapes[nxt])
            pos += 2
        else:
            if quotes and text[pos] == "\n":
                raise FormatError(f"{where}: raw newline in a label value")
            out.append(text[pos])
            pos += 1
    return "".join(out)


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def assert_round_trip(metrics: list[Metric]) -> None:
    families = parse(render_metrics(metrics))
    assert list(families) == [metric.name for metric in metrics]
    for metric in metrics:
        family = families[metric.name]
        assert (family.help, family.type) == (metric.help, metric.type)
        assert len(family.samples) == len(metric.samples)
        for (labels, value), sample in zip(family.samples, metric.samples, strict=True):
            assert labels == dict(sample.labels)
            assert same(value, sample.value), (value, sample.value)


# The renderer


RUNS = Metric(
    "reconcile_runs_total",
    "Runs recorded, by kind and outcome.",
    "counter",
    (
        Sample(12, {"kind": "apply", "outcome": "ok"}),
        Sample(1, {"kind": "apply", "outcome": "failed"}),
    ),
)
DRIFT = Metric(
    "reconcile_drift_since_seconds",
    "When each drifted field was first seen drifted (unix seconds).",
    "gauge",
    (Sample(1715000000.5, {"subject_kind": "guest", "subject": "web", "field": "memory"}),),
)


def test_renders_help_type_and_samples() -> None:
    assert render_metrics([RUNS, DRIFT, Metric("reconcile_up", "", "gauge", [Sample(1)])]) == (
        "# HELP reconcile_runs_total Runs recorded, by kind and outcome.\n"
        "# TYPE reconcile_runs_total counter\n"
        'reconcile_runs_total{kind="apply",outcome="ok"} 12\n'
        'reconcile_runs_total{kind="apply",outcome="failed"} 1\n'
        "# HELP reconcile_drift_since_seconds When each drifted field was first seen drifted"
        " (unix seconds).\n"
        "# TYPE reconcile_drift_since_seconds gauge\n"
        'reconcile_drift_since_seconds{subject_kind="guest",subject="web",field="memory"}'
        " 1715000000.5\n"
        "# HELP reconcile_up\n"
        "# TYPE reconcile_up gauge\n"
        "reconcile_up 1\n"
    )
    assert render_metrics([]) == ""


def test_label_values_and_help_are_escaped() -> None:
    assert escape_label_value('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    text = render_metrics(
        [
            Metric(
                "m",
                'help with \\ and "quotes"\nand a newline',
                "gauge",
                [Sample(1, {"l": 'x"\\\n'})],
            )
        ]
    )
    assert text == (
        '# HELP m help with \\\\ and "quotes"\\nand a newline\n'
        "# TYPE m gauge\n"
        'm{l="x\\"\\\\\\n"} 1\n'
    )
    assert parse(text)["m"].samples == [({"l": 'x"\\\n'}, 1.0)]
    assert parse(text)["m"].help == 'help with \\ and "quotes"\nand a newline'


def test_special_values() -> None:
    metric = Metric(
        "g",
        "h",
        "gauge",
        [
            Sample(v, {"i": str(i)})
            for i, v in enumerate([math.inf, -math.inf, math.nan, -0.0, 1e-7, 2.0**60])
        ],
    )
    text = render_metrics([metric])
    assert text.splitlines()[2:5] == ['g{i="0"} +Inf', 'g{i="1"} -Inf', 'g{i="2"} NaN']
    assert_round_trip([metric])


@pytest.mark.parametrize(
    ("metric", "message"),
    [
        (Metric("1bad", "h", "gauge"), "invalid metric name"),
        (Metric("bad-name", "h", "gauge"), "invalid metric name"),
        (Metric("m", "h", "histogram"), "not gauge or counter"),  # type: ignore[arg-type]
        (Metric("m", "h", "gauge", [Sample(1, {"bad-label": "x"})]), "invalid label name"),
        (Metric("m", "h", "gauge", [Sample(1, {"__name__": "x"})]), "invalid label name"),
        (Metric("m", "h", "gauge", [Sample(1, {"a": "1"}), Sample(2, {"a": "1"})]), "two samples"),
        (Metric("m", "h", "gauge", [Sample(1), Sample(2)]), "two samples"),
        (Metric("m", "h", "counter", [Sample(-1)]), "must not be negative"),
        (Metric("m", "h", "counter", [Sample(math.nan)]), "must not be negative"),
    ],
)
def test_what_the_collector_would_reject_is_refused(metric: Metric, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_metrics([metric])


def test_a_family_given_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="one TYPE per family"):
        render_metrics([RUNS, DRIFT, RUNS])


def test_the_parser_is_strict() -> None:
    for bad in [
        "m 1",  # no final newline
        "# TYPE m gauge\n# TYPE m gauge\nm 1\n",
        "m 1\n# TYPE m gauge\n",
        "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na 2\n",
        'm{l="\\t"} 1\n',
        'm{l="x} 1\n',
        'm{1l="x"} 1\n',
        "m 1 1715000000\n",
        "m one\n",
        "m 1\nm 2\n",
        "# TYPE m nonsense\n",
        "# HELP 1m text\n",
    ]:
        with pytest.raises(FormatError):
            parse(bad)
    assert parse('# other comment\n\nm{a="1",} 1\n')["m"].samples == [({"a": "1"}, 1.0)]


names = st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,15}", fullmatch=True)
label_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,10}", fullmatch=True).filter(
    lambda name: not name.startswith("__")
)
label_values = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20) | (
    st.text(alphabet='\\"\n{}=, a', max_size=10)
)
values = st.floats(allow_nan=True, allow_infinity=True)


@st.composite
def families(draw: st.DrawFn) -> list[Metric]:
    chosen = draw(st.lists(names, max_size=4, unique=True))
    metrics = []
    for name in chosen:
        kind = draw(st.sampled_from(["gauge", "counter"]))
        label_sets = draw(
            st.lists(
                st.dictionaries(label_names, label_values, max_size=3),
                max_size=4,
                unique_by=lambda labels: tuple(sorted(labels.items())),
            )
        )
        number = (
            st.floats(min_value=0, allow_infinity=True, allow_nan=False)
            if kind == "counter"
            else values
        )
        samples = [Sample(draw(number), labels) for labels in label_sets]
        help_text = draw(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30))
        metrics.append(Metric(name, help_text, kind, samples))
    return metrics


@given(families())
def test_any_valid_model_renders_to_text_that_parses_back(metrics: list[Metric]) -> None:
    assert_round_trip(metrics)


# Writing the textfile


def test_write_atomic_replaces_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "reconcile.prom"
    target.write_text("old\n")
    os.chmod(target, 0o600)
    text = render_metrics([RUNS])
    write_atomic(target, text)
    assert target.read_text() == text
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert os.listdir(tmp_path) == ["reconcile.prom"]
    write_atomic(target, "new\n", mode=0o640)
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert os.listdir(tmp_path) == ["reconcile.prom"]


def test_write_atomic_failure_is_a_reconcile_error_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ReconcileError, match="cannot write"):
        write_atomic(tmp_path / "missing" / "reconcile.prom", "x\n")
    target = tmp_path / "reconcile.prom"
    target.write_text("old\n")
    with pytest.raises(UnicodeEncodeError):
        write_atomic(target, "\udcff")  # not encodable: fails after the temporary exists
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["reconcile.prom"]
