"""One GitOps cycle on the controller: fetch, check, plan, apply (by policy), report, record.

Fit for a timer: every cycle is independent and bounded. It holds the lab's lock from the
fetch to the report, so a human's `apply` and a cycle never interleave; when a human holds
it, the cycle waits `lock_timeout` and then skips, saying so. The history database keeps
what a cycle must remember: the last commit it accepted (a new head must descend from it,
unless rewrites are allowed) and the last commit that failed (never retried in a loop).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from reconcile.adapters import files, git
from reconcile.adapters.lock import LabLock
from reconcile.core.desired import GitOps, GitOpsApply, Manifest
from reconcile.core.drift_report import DriftReport
from reconcile.core.errors import LockError, ManifestError, ReconcileError
from reconcile.core.exits import EXIT_CHANGES, EXIT_DEGRADED, EXIT_ERROR, EXIT_OK
from reconcile.core.plan import Plan
from reconcile.core.report import render_text
from reconcile.orchestration import pipeline, reports
from reconcile.orchestration.executor import Result, execute, exit_code
from reconcile.orchestration.pipeline import Context, PlanOptions
from reconcile.orchestration.runs import LabPerformer

log = structlog.get_logger(__name__)

LAST_HEAD = "gitops.last_head"  # the last commit a cycle accepted (applied, or planned)
FAILED = "gitops.failed_commit"  # the commit whose apply failed: not retried by itself


@dataclass(frozen=True)
class CycleOptions:
    lock_timeout_s: float = 60.0
    parallel: int = 4
    retry: bool = False  # apply a commit that failed before, once more
    report_dir: Path | None = None  # drift.{html,json,md} of the lab after the cycle
    metrics: Path | None = None


@dataclass
class Cycle:
    code: int
    outcome: str  # applied, in-sync, planned, skipped-locked, refused-rewrite, ...
    message: str
    commit: str = ""
    plan_text: str = ""
    results: list[Result] = field(default_factory=list)
    report: DriftReport | None = None


def settings(manifest: Manifest) -> GitOps:
    if manifest.gitops is None:
        raise ReconcileError(
            f"{manifest.path} has no [gitops] table",
            hint='add one: [gitops] repo = "https://git.example/lab.git", '
            'manifest = "manifests/lab.toml"',
        )
    return manifest.gitops


def cycle(bootstrap: Path, options: CycleOptions) -> Cycle:
    """One cycle. `bootstrap` is the controller's local copy of the lab's manifest: its
    [gitops] table says where the lab's manifest lives, its [lab] where state is kept."""
    started = time.time()
    boot = pipeline.load(bootstrap)
    gitops = settings(boot)
    try:
        with LabLock(boot.lab.state_dir / "lock", timeout_s=options.lock_timeout_s):
            result = _locked_cycle(boot, gitops, options, started)
    except LockError as error:
        log.warning(
            "lab locked: skipping this cycle", holder=error.message, waited=options.lock_timeout_s
        )
        result = Cycle(
            EXIT_OK,
            "skipped-locked",
            f"skipped: {error.message} (waited {options.lock_timeout_s:g}s); "
            "the next cycle tries again",
        )
        _record(boot, result, started)
    return result


def _locked_cycle(boot: Manifest, gitops: GitOps, options: CycleOptions, started: float) -> Cycle:
    workdir = boot.lab.state_dir / "gitops"
    fetched = git.sync(gitops.repo, gitops.branch, workdir)
    sha = fetched.sha
    log.info(
        "fetched", repo=fetched.repo, branch=gitops.branch, commit=sha, subject=fetched.subject
    )
    with reports.history(boot) as db:
        last, failed = db.get_state(LAST_HEAD), db.get_state(FAILED)
    refusal = _refusal(workdir, gitops, sha, last, failed, retry=options.retry)
    if refusal is not None:
        outcome, message = refusal
        result = Cycle(EXIT_ERROR, outcome, message, commit=sha)
        _record(boot, result, started)
        return result
    tree = git.checkout(workdir, sha)
    try:
        manifest = _load_checked_out(tree, gitops, boot)
    except ReconcileError as error:
        problems = ""
        if isinstance(error, ManifestError):
            problems = "\n" + "\n".join(p.render() for p in error.problems)
        result = Cycle(
            EXIT_ERROR,
            "invalid-manifest",
            f"commit {sha[:12]}: {error.message}{problems}\nnothing was applied",
            commit=sha,
        )
        _remember(boot, failed=sha)
        _record(boot, result, started)
        return result
    result = _converge(manifest, gitops, options, sha)
    if result.code in (EXIT_OK, EXIT_DEGRADED, EXIT_CHANGES):
        _remember(boot, last=sha, failed=None)
    else:
        _remember(boot, failed=sha if gitops.apply is GitOpsApply.AUTO else None)
    assert result.plan_after is not None
    result.report = reports.record_drift(
        manifest,
        result.plan_after,
        kind="gitops",
        started=started,
        commit=sha,
        outcome=result.outcome,
        exit_code=result.code,
        extra={"message": result.message, "results": _results(result.results)},
    )
    _write_outputs(result.report, options, result.code, started)
    return result


def _refusal(
    workdir: Path, gitops: GitOps, sha: str, last: str | None, failed: str | None, *, retry: bool
) -> tuple[str, str] | None:
    """Why this commit must not be applied (outcome, message), or None."""
    if (
        last
        and last != sha
        and not gitops.allow_rewrites
        and not git.is_ancestor(workdir, last, sha)
    ):
        return (
            "refused-rewrite",
            f"refusing {sha[:12]}: it does not descend from {last[:12]}, the last commit "
            f"applied (history of {gitops.branch} was rewritten); the lab is untouched. "
            "If that was intended, set gitops.allow_rewrites = true for one cycle",
        )
    if gitops.require_signed:
        signature = git.verify_signed(workdir, sha, gitops.allowed_signers)
        if not signature.good:
            return (
                "refused-unsigned",
                f"refusing {sha[:12]}: {signature.summary()}; the lab is untouched",
            )
    if failed == sha and not retry:
        return (
            "not-retried",
            f"commit {sha[:12]} failed in an earlier cycle; not retrying it until a new commit "
            "arrives (or run `reconcile gitops --retry` once)",
        )
    return None


def _load_checked_out(tree: Path, gitops: GitOps, boot: Manifest) -> Manifest:
    path = (tree / gitops.manifest).resolve()
    if not path.is_relative_to(tree.resolve()):
        raise ReconcileError(f"gitops.manifest {gitops.manifest} leads outside the repository")
    manifest = pipeline.load(path)
    if (manifest.lab.name, manifest.lab.state_dir) != (boot.lab.name, boot.lab.state_dir):
        raise ReconcileError(
            f"the repository's manifest is lab '{manifest.lab.name}' in "
            f"{manifest.lab.state_dir}, the controller's is '{boot.lab.name}' in "
            f"{boot.lab.state_dir}",
            hint="the controller's manifest and the repository's must name the same lab and "
            "state_dir (one lock, one history)",
        )
    return manifest


@dataclass
class _Converged(Cycle):
    plan_after: Plan | None = None


def _converge(manifest: Manifest, gitops: GitOps, options: CycleOptions, sha: str) -> _Converged:
    ctx = Context(manifest)
    try:
        plan = pipeline.make(ctx, PlanOptions())
        text = render_text(plan)
        unknown = plan.unknown()
        results: list[Result] = []
        if gitops.apply is GitOpsApply.AUTO and plan.actions():
            log.info("applying", commit=sha, actions=len(plan.actions()))
            results = execute(plan, LabPerformer(ctx), parallel=options.parallel)
            code = exit_code(results, list(unknown))
            outcome = "applied" if code == EXIT_OK else f"apply-exit-{code}"
            after = pipeline.make(ctx, PlanOptions())  # what the lab looks like now
        else:
            code = EXIT_ERROR if unknown else EXIT_CHANGES if plan.has_changes() else EXIT_OK
            outcome = "in-sync" if code == EXIT_OK else "planned" if code == 2 else "unknown"
            after = plan
    finally:
        ctx.close()
    message = f"commit {sha[:12]}: {outcome}"
    return _Converged(code, outcome, message, sha, text, results, plan_after=after)


def _remember(boot: Manifest, **values: str | None) -> None:
    keys = {"last": LAST_HEAD, "failed": FAILED}
    with reports.history(boot) as db:
        for name, value in values.items():
            db.set_state(keys[name], value)


def _record(boot: Manifest, result: Cycle, started: float) -> None:
    with reports.history(boot) as db:
        db.record_run(
            "gitops",
            started,
            time.time(),
            result.outcome,
            result.code,
            manifest_digest=boot.digest,
            commit=result.commit,
            summary={"message": result.message},
        )


def _results(results: list[Result]) -> list[dict[str, object]]:
    return [{"key": r.action.key, "outcome": r.outcome.value} for r in results]


def _write_outputs(report: DriftReport, options: CycleOptions, code: int, started: float) -> None:
    if options.report_dir is not None:
        options.report_dir.mkdir(parents=True, exist_ok=True)
        for fmt, suffix in (("html", "html"), ("json", "json"), ("markdown", "md")):
            files.write_atomic(
                options.report_dir / f"drift.{suffix}", reports.rendered(report, fmt)
            )
    if options.metrics is not None:
        reports.write_metrics(options.metrics, report, "gitops", code, started)
