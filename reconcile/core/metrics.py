"""Prometheus metrics as node_exporter's textfile collector reads them (text format 0.0.4).

Pure: the caller builds the families and writes the text atomically (node_exporter may read
the file at any moment). Everything the collector would reject (a bad name, a reused family,
two samples with the same labels, a negative counter) is refused here as a ValueError, since
it can only be a bug in the code that built the metrics, and a rejected file loses all of
them, not just the bad one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Metric", "MetricType", "Sample", "render_metrics"]

MetricType = Literal["gauge", "counter"]

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_TYPES: frozenset[str] = frozenset({"gauge", "counter"})


@dataclass(frozen=True)
class Sample:
    """One value of a family, told apart from its siblings by its labels."""

    value: float
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Metric:
    """One metric family: a name, its help text, its type and its samples."""

    name: str
    help: str
    type: MetricType
    samples: Sequence[Sample] = ()


def render_metrics(samples: Sequence[Metric]) -> str:
    """The families in the given order, each as HELP, TYPE and its sample lines."""
    seen: set[str] = set()
    lines: list[str] = []
    for metric in samples:
        _check_family(metric, seen)
        seen.add(metric.name)
        help_text = f" {_escape_help(metric.help)}" if metric.help else ""
        lines.append(f"# HELP {metric.name}{help_text}")
        lines.append(f"# TYPE {metric.name} {metric.type}")
        label_sets: set[tuple[tuple[str, str], ...]] = set()
        for sample in metric.samples:
            _check_sample(metric, sample, label_sets)
            lines.append(f"{metric.name}{_render_labels(sample.labels)} {_format(sample.value)}")
    return "".join(line + "\n" for line in lines)


def escape_label_value(value: str) -> str:
    """A label value inside double quotes: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    # HELP escapes only backslash and newline; a quote there is literal.
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _render_labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{name}="{escape_label_value(value)}"' for name, value in labels.items())
    return "{" + inner + "}"


def _format(value: float) -> str:
    """Go's ParseFloat reads all of these; integral values print without a fraction."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _check_family(metric: Metric, seen: set[str]) -> None:
    if not METRIC_NAME.fullmatch(metric.name):
        raise ValueError(f"invalid metric name {metric.name!r}")
    if metric.name in seen:
        raise ValueError(f"metric family {metric.name!r} given twice; one TYPE per family")
    if metric.type not in _TYPES:
        raise ValueError(f"metric {metric.name!r}: type {metric.type!r} is not gauge or counter")


def _check_sample(
    metric: Metric, sample: Sample, label_sets: set[tuple[tuple[str, str], ...]]
) -> None:
    for name in sample.labels:
        if not LABEL_NAME.fullmatch(name) or name.startswith("__"):
            raise ValueError(f"metric {metric.name!r}: invalid label name {name!r}")
    key = tuple(sorted(sample.labels.items()))
    if key in label_sets:
        raise ValueError(f"metric {metric.name!r}: two samples with labels {dict(key)}")
    label_sets.add(key)
    if metric.type == "counter" and not sample.value >= 0:
        raise ValueError(f"counter {metric.name!r} must not be negative or NaN: {sample.value}")
