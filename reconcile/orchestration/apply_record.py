"""An apply in the lab's run history, and the history itself: all that a no-op apply
loads beyond a plan (drift reports and their metrics are drift_runs.py's)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from reconcile.adapters.history import History
from reconcile.core.desired import Manifest
from reconcile.core.exits import ExitCode
from reconcile.orchestration.executor import Outcome, Result


def history(manifest: Manifest) -> History:
    return History.open(manifest.lab.layout.history)


_APPLY_OUTCOMES = {
    ExitCode.OK: "ok",
    ExitCode.DEGRADED: "degraded",
    ExitCode.ROLLED_BACK: "rolled-back",
}


def record_apply(
    manifest: Manifest,
    started: float,
    code: ExitCode,
    results: Sequence[Result],
    *,
    unknown: Mapping[str, str],
    conflicts: Mapping[str, str],
) -> None:
    """An apply in the lab's history: its outcome, and a summary of what each action did."""
    summary = {
        "outcomes": {o.value: n for o in Outcome if (n := sum(r.outcome is o for r in results))},
        "not_ok": sorted({r.action.subject for r in results if not r.outcome.ok()}),
        "unknown": sorted(unknown),
        "conflicts": sorted(conflicts),
    }
    outcome = _APPLY_OUTCOMES.get(code, "failed") if results or conflicts else "no-changes"
    with history(manifest) as db:
        db.record_run(
            "apply",
            started,
            time.time(),
            outcome,
            code,
            manifest_digest=manifest.digest,
            summary=summary,
        )
