"""Drift reports, the run history and the metrics file: what a lab looked like, and since when.

`drift` is read-only towards the lab: it observes exactly as `plan` does (no lock that
blocks `apply`) and writes only the lab's history database, and the report and metrics
files it is asked for.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconcile.adapters import files, lock
from reconcile.adapters.history import DriftObservation, RunRecord
from reconcile.core.desired import Manifest
from reconcile.core.drift.items import drift_items, drifted_fields, report_metrics, with_since
from reconcile.core.drift.report import (
    DriftReport,
    DriftStatus,
    Notice,
    NoticeLevel,
    render_html,
    render_json,
    render_markdown,
    render_text,
)
from reconcile.core.exits import ExitCode
from reconcile.core.lockage import lock_metric
from reconcile.core.metrics import Metric, render_metrics
from reconcile.core.plan.graph import Plan
from reconcile.orchestration import pipeline
from reconcile.orchestration.apply_record import history
from reconcile.orchestration.pipeline import Context, PlanOptions


def rendered(report: DriftReport, fmt: str, *, show_unmanaged: bool = False) -> str:
    """The report in `fmt`; only the text counts unmanaged domains instead of listing them
    (unless `show_unmanaged`): the documents (JSON, Markdown, HTML) list every one."""
    match fmt:
        case "json":
            return json.dumps(render_json(report), indent=2) + "\n"
        case "markdown":
            return render_markdown(report)
        case "html":
            return render_html(report)
        case _:
            return render_text(report, show_unmanaged=show_unmanaged)


def record_drift(
    manifest: Manifest,
    plan: Plan,
    *,
    kind: str,
    started: float,
    commit: str = "",
    extra: Mapping[str, Any] | None = None,
    outcome: str | None = None,
    exit_code: ExitCode | None = None,
    notices: Sequence[Notice] = (),
    scoped: bool = False,
) -> DriftReport:
    """The drift report of a plan, with since-when from the history, and this run recorded
    (with the drift's verdict as its outcome, unless the caller's run had another).
    `scoped`: the plan looked at some subjects only (`--target`)."""
    items = drift_items(plan.diff, manifest.drift_ignore)
    now = time.time()
    draft = DriftReport(
        lab=manifest.lab.name,
        manifest=str(manifest.path),
        generated_at=now,
        items=tuple(items),
        unmanaged=plan.diff.unmanaged,
        commit=commit,
        notices=tuple(notices),
    )
    summary = {
        "drift": {s.value: n for s, n in draft.counts.items()},
        "drifted": sorted(f"{i.kind}.{i.name}" for i in items if i.status is DriftStatus.DRIFTED),
        **(extra or {}),
    }
    with history(manifest) as db:
        verdict = {ExitCode.OK: "in-sync", ExitCode.CHANGES: "drift"}.get(draft.exit_code, "error")
        run_id = db.record_run(
            kind,
            started,
            now,
            outcome or verdict,
            draft.exit_code if exit_code is None else exit_code,
            manifest_digest=manifest.digest,
            commit=commit,
            summary=summary,
        )
        since = db.update_drift(
            run_id,
            now,
            [DriftObservation(*row) for row in drifted_fields(items)],
            unknown=[(i.kind, i.name) for i in items if i.status is DriftStatus.UNKNOWN],
            looked_at=[(i.kind, i.name) for i in items] if scoped else None,
        )
    return DriftReport(
        lab=draft.lab,
        manifest=draft.manifest,
        generated_at=now,
        items=tuple(with_since(items, since)),
        unmanaged=draft.unmanaged,
        commit=commit,
        notices=draft.notices,
    )


@dataclass(frozen=True)
class DriftOptions:
    targets: tuple[str, ...] = ()
    metrics: Path | None = None


def drift(path: Path, options: DriftOptions) -> DriftReport:
    """Observe the lab (read-only), report drift, record the run, write the metrics."""
    started = time.time()
    ctx = Context(pipeline.load(path))
    try:
        plan = pipeline.make(ctx, PlanOptions(options.targets))
    finally:
        ctx.close()
    manifest = ctx.manifest
    warning, age = lock.lock_state(manifest.lab.layout.lock, manifest.lab.lock_warn_after_s)
    report = record_drift(
        manifest,
        plan,
        kind="drift",
        started=started,
        scoped=bool(options.targets),
        notices=[Notice(NoticeLevel.WARNING, warning)] if warning else [],
    )
    if options.metrics is not None:
        extra = [lock_metric(manifest.lab.name, age)]
        write_metrics(options.metrics, report, "drift", report.exit_code, started, extra=extra)
    return report


def write_metrics(
    path: Path,
    report: DriftReport,
    command: str,
    code: ExitCode,
    started: float,
    *,
    extra: Sequence[Metric] = (),
) -> None:
    finished = time.time()
    metrics = report_metrics(
        report, command=command, exit_code=code, finished=finished, seconds=finished - started
    )
    metrics += extra
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_atomic(path, render_metrics(metrics))


# What an apply's exit code is recorded as; any other code of an apply that did something
# is "failed", and one with nothing to do is "no-changes".
def recent(path: Path, limit: int, kind: str | None) -> list[RunRecord]:
    manifest = pipeline.load(path)
    with history(manifest) as db:
        return db.recent_runs(limit, kind)
