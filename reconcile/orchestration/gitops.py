"""One GitOps cycle on the controller: fetch, check, plan, apply (by policy), report, record.

Fit for a timer: every cycle is independent and bounded. It holds the lab's lock from the
fetch to the report, so a human's `apply` and a cycle never interleave; when a human holds
it, the cycle waits `lock_timeout` and then skips, saying so. The history database keeps
what a cycle must remember: the last commit it accepted (a new head must descend from it,
unless rewrites are allowed) and the last commit that failed (never retried in a loop).

Trust (docs/security.md): the controller's manifest (`bootstrap`) is the operator's and
governs every cycle; the repository's manifest is confined to the paths the bootstrap's
`gitops.allowed_paths` allow, and its own `[gitops]` table is never used. Every cycle ends
in `_finish`, whatever stage it stopped at: the history, the report directory and the
metrics all say which commit, which stage and which error.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reconcile.adapters import files, git
from reconcile.adapters.lock import LabLock
from reconcile.core.desired import GitOps, GitOpsApply, Manifest
from reconcile.core.drift.report import DriftReport, Notice, NoticeLevel
from reconcile.core.errors import LockError, ManifestError, Problem, ReconcileError
from reconcile.core.exits import ExitCode
from reconcile.core.gitops import confinement
from reconcile.core.gitops.status import Stage, cycle_metrics, unsigned_notice
from reconcile.core.metrics import Metric
from reconcile.core.plan.graph import Plan
from reconcile.core.plan.report import render_text
from reconcile.logs import get_logger
from reconcile.orchestration import apply_record, drift_runs, pipeline
from reconcile.orchestration.executor import Result, execute, exit_code
from reconcile.orchestration.kinds import Router
from reconcile.orchestration.pipeline import Context, PlanOptions

log = get_logger(__name__)

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
    code: ExitCode
    outcome: str  # applied, in-sync, planned, skipped-locked, refused-rewrite, ...
    message: str
    commit: str = ""
    plan_text: str = ""
    results: list[Result] = field(default_factory=list)
    report: DriftReport | None = None
    stage: Stage | None = None  # the stage that failed or refused, None when none did
    hint: str = ""


class CycleError(ReconcileError):
    """A stage refused the commit (`outcome` says why) or could not go on."""

    def __init__(
        self,
        outcome: str,
        message: str,
        *,
        hint: str | None = None,
        problems: Sequence[Problem] = (),
        mark_failed: bool = False,
    ) -> None:
        super().__init__(message, hint=hint)
        self.outcome = outcome
        self.problems = tuple(problems)
        self.mark_failed = mark_failed  # the commit itself is at fault: do not retry it


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
        pipeline.claim_state_dir(boot)
        with LabLock(boot.lab.layout.lock, timeout_s=options.lock_timeout_s):
            return _Run(boot, gitops, options, started).go()
    except LockError as error:
        log.warning(
            "lab locked: skipping this cycle", holder=error.message, waited=options.lock_timeout_s
        )
        result = Cycle(
            ExitCode.OK,
            "skipped-locked",
            f"skipped: {error.message} (waited {options.lock_timeout_s:g}s); "
            "the next cycle tries again",
        )
        _record_run(boot, result, started, {"message": result.message})
        return result


@dataclass
class _Converged(Cycle):
    plan_after: Plan | None = None


@dataclass
class _Run:
    """One cycle under the lock: the stage it is at, the commit once known."""

    boot: Manifest
    gitops: GitOps
    options: CycleOptions
    started: float
    stage: Stage = Stage.FETCH
    commit: str = ""
    manifest: Manifest | None = None  # the repository's, once loaded

    @property
    def workdir(self) -> Path:
        return self.boot.lab.layout.gitops_dir

    @property
    def unsigned(self) -> bool:
        return not self.gitops.require_signed

    def go(self) -> Cycle:
        if self.unsigned:
            log.warning(
                "commit signatures are not checked",
                setting="gitops.require_signed = false",
                repo=git.redact(self.gitops.repo),
            )
        try:
            return self._stages()
        except CycleError as error:
            return self._failed(error)
        except ManifestError as error:
            return self._failed(
                CycleError(
                    "invalid-manifest", error.message, problems=error.problems, mark_failed=True
                )
            )
        # A failure while applying leaves the commit failed (not retried in a loop); before
        # that, the next cycle tries again (a fetch or a plan may fail for a passing cause).
        except ReconcileError as error:
            return self._failed(
                CycleError(
                    f"failed-{self.stage}",
                    error.message,
                    hint=error.hint,
                    mark_failed=self.stage is Stage.APPLY,
                )
            )
        except OSError as error:
            where = f" ({error.filename})" if error.filename else ""
            return self._failed(
                CycleError(
                    f"failed-{self.stage}",
                    f"{error.strerror or error}{where}",
                    hint="check that the file or directory exists and is readable by the "
                    "user running reconcile",
                    mark_failed=self.stage is Stage.APPLY,
                )
            )

    def _stages(self) -> Cycle:
        gitops = self.gitops
        self.stage = Stage.FETCH
        pin = _ssh_pin(gitops) if git.is_ssh(gitops.repo) else None
        fetched = git.sync(gitops.repo, gitops.branch, self.workdir, ssh=pin)
        self.commit = sha = fetched.sha
        log.info(
            "fetched", repo=fetched.repo, branch=gitops.branch, commit=sha, subject=fetched.subject
        )
        self.stage = Stage.VERIFY
        with apply_record.history(self.boot) as db:
            last, failed = db.get_state(LAST_HEAD), db.get_state(FAILED)
        self._verify(sha, last, failed)
        self.stage = Stage.LOAD
        tree = git.checkout(self.workdir, sha)
        self.manifest = manifest = _load_checked_out(tree, gitops, self.boot)
        self.stage = Stage.PLAN
        result = self._converge(manifest)
        accepted = result.code in (ExitCode.OK, ExitCode.DEGRADED, ExitCode.CHANGES)
        if accepted:
            _remember(self.boot, last=sha, failed=None)
        else:
            _remember(self.boot, failed=sha if gitops.apply is GitOpsApply.AUTO else None)
        if not accepted and result.results:
            result.stage = Stage.APPLY
        return self._finish(result, result.plan_after)

    def _verify(self, sha: str, last: str | None, failed: str | None) -> None:
        gitops = self.gitops
        if (
            last
            and last != sha
            and not gitops.allow_rewrites
            and not git.is_ancestor(self.workdir, last, sha)
        ):
            raise CycleError(
                "refused-rewrite",
                f"refusing {sha[:12]}: it does not descend from {last[:12]}, the last commit "
                f"applied (history of {gitops.branch} was rewritten); the lab is untouched. "
                "If that was intended, set gitops.allow_rewrites = true for one cycle",
            )
        if gitops.require_signed:
            signers = gitops.allowed_signers
            if signers is not None and _inside(signers, self.workdir):
                raise CycleError(
                    "refused-unsigned",
                    f"gitops.allowed_signers {signers} is inside the repository's own copy "
                    f"({self.workdir}): the repository would choose who may sign it",
                    hint="keep the allowed signers file in the controller's configuration, "
                    "e.g. /etc/reconcile/allowed_signers",
                )
            signature = git.verify_signed(self.workdir, sha, signers)
            if not signature.good:
                raise CycleError(
                    "refused-unsigned",
                    f"refusing {sha[:12]}: {signature.summary()}; the lab is untouched",
                    hint="sign the commit with a key listed in gitops.allowed_signers "
                    "(git commit -S with gpg.format=ssh)",
                )
        if failed == sha and not self.options.retry:
            raise CycleError(
                "not-retried",
                f"commit {sha[:12]} failed in an earlier cycle; not retrying it until a new "
                "commit arrives (or run `reconcile gitops --retry` once)",
            )

    def _converge(self, manifest: Manifest) -> _Converged:
        gitops, sha = self.gitops, self.commit
        ctx = Context(manifest)
        try:
            plan = pipeline.make(ctx, PlanOptions())
            text = render_text(plan)
            unknown = plan.unknown()
            conflicts = plan.conflicts()  # cannot converge: an error, like unknown
            results: list[Result] = []
            if gitops.apply is GitOpsApply.AUTO and plan.actions() and plan.recreates():
                raise CycleError(
                    "recreate-refused",
                    f"commit {sha[:12]} would wipe the disk of {', '.join(plan.recreates())} "
                    "(recreate): GitOps never wipes a disk on its own; run `reconcile apply "
                    "--allow-recreate` by hand",
                )
            if gitops.apply is GitOpsApply.AUTO and plan.actions():
                self.stage = Stage.APPLY
                log.info("applying", commit=sha, actions=len(plan.actions()))
                results = execute(plan, Router(ctx), parallel=self.options.parallel)
                code = exit_code(results, [*unknown, *conflicts])
                outcome = "applied" if code is ExitCode.OK else f"apply-exit-{code}"
                after = pipeline.make(ctx, PlanOptions())  # what the lab looks like now
            else:
                blocked = unknown or conflicts
                changes = ExitCode.CHANGES if plan.has_changes() else ExitCode.OK
                code = ExitCode.ERROR if blocked else changes
                outcome = (
                    "in-sync"
                    if code is ExitCode.OK
                    else "planned"
                    if code is ExitCode.CHANGES
                    else "unknown"
                    if unknown
                    else "conflict"
                )
                after = plan
        finally:
            ctx.close()
        message = f"commit {sha[:12]}: {outcome}"
        return _Converged(code, outcome, message, sha, text, results, plan_after=after)

    def _failed(self, error: CycleError) -> Cycle:
        if error.mark_failed and self.commit:
            _remember(self.boot, failed=self.commit)
        problems = "".join("\n" + p.render() for p in error.problems)
        later = self.stage.rank > Stage.VERIFY.rank
        prefix = f"commit {self.commit[:12]}: " if self.commit and later else ""
        tail = "\nnothing was applied" if self.stage in (Stage.LOAD, Stage.PLAN) else ""
        if self.stage is Stage.FETCH:
            prefix = "fetch failed: "
        result = Cycle(
            ExitCode.ERROR,
            error.outcome,
            f"{prefix}{error.message}{problems}{tail}",
            commit=self.commit,
            stage=self.stage,
            hint=error.hint or "",
        )
        log.error(
            "gitops cycle failed",
            stage=str(self.stage),
            commit=self.commit,
            outcome=error.outcome,
            error=error.message,
        )
        return self._finish(result, None)

    def _finish(self, result: Cycle, plan_after: Plan | None) -> Cycle:
        """The one way out of a cycle: history, report directory, metrics."""
        notices = []
        if self.unsigned:
            notices.append(Notice(NoticeLevel.WARNING, unsigned_notice(self.commit)))
        if result.stage is not None:
            what = result.message + (f"\nhint: {result.hint}" if result.hint else "")
            notices.append(Notice(NoticeLevel.ERROR, f"cycle failed at {result.stage}: {what}"))
        summary: dict[str, object] = {
            "message": result.message,
            "stage": str(result.stage or ""),
            "unsigned": self.unsigned,
        }
        if result.stage is not None:
            summary["hint"] = result.hint
        if isinstance(result, _Converged):
            summary["results"] = _results(result.results)
        if plan_after is not None and self.manifest is not None:
            report = drift_runs.record_drift(
                self.manifest,
                plan_after,
                kind="gitops",
                started=self.started,
                commit=result.commit,
                outcome=result.outcome,
                exit_code=result.code,
                extra=summary,
                notices=notices,
            )
        else:
            _record_run(self.boot, result, self.started, summary)
            report = DriftReport(
                lab=self.boot.lab.name,
                manifest=str(self.manifest.path if self.manifest else self.boot.path),
                generated_at=time.time(),
                items=(),
                commit=result.commit,
                notices=tuple(notices),
                observed=False,
            )
        result.report = report
        extra = cycle_metrics(self.boot.lab.name, failed=result.stage, unsigned=self.unsigned)
        _write_outputs(report, self.options, result.code, self.started, extra)
        return result


def _ssh_pin(gitops: GitOps) -> git.SshPin:
    return git.SshPin(
        host_key=gitops.host_key,
        known_hosts=gitops.known_hosts,
        identity=gitops.identity,
        connect_timeout_s=gitops.connect_timeout_s,
    )


def _inside(path: Path, directory: Path) -> bool:
    real = path.resolve()
    return real.is_relative_to(directory.resolve())


def _load_checked_out(tree: Path, gitops: GitOps, boot: Manifest) -> Manifest:
    path = (tree / gitops.manifest).resolve()
    if not path.is_relative_to(tree.resolve()):
        raise CycleError(
            "invalid-manifest",
            f"gitops.manifest {gitops.manifest} leads outside the repository",
            hint="name a file inside the repository, e.g. manifests/lab.toml",
        )
    manifest = pipeline.load(path)
    if (manifest.lab.name, manifest.lab.state_dir) != (boot.lab.name, boot.lab.state_dir):
        raise CycleError(
            "invalid-manifest",
            f"the repository's manifest is lab '{manifest.lab.name}' in "
            f"{manifest.lab.state_dir}, the controller's is '{boot.lab.name}' in "
            f"{boot.lab.state_dir}",
            hint="the controller's manifest and the repository's must name the same lab and "
            "state_dir (one lock, one history)",
            mark_failed=True,
        )
    _confine(manifest, path, tree, gitops)
    _ignore_gitops_table(manifest, gitops)
    return manifest


def _confine(manifest: Manifest, path: Path, tree: Path, gitops: GitOps) -> None:
    """Refuse a repository manifest naming paths outside the controller's allowed roots."""
    named = confinement.named_paths(manifest)
    copy = tree.parent
    wanted = {*(n.path for n in named), *gitops.allowed_paths, tree, copy}
    real = {p: p.resolve() for p in wanted}
    violations = confinement.judge(
        named, real, roots=gitops.allowed_paths, checkout=tree, copy=copy
    )
    if violations:
        text = files.read_manifest(path).decode("utf-8")
        raise CycleError(
            "refused-paths",
            "the repository's manifest names what the controller does not allow",
            hint="the controller's manifest (gitops.allowed_paths) decides which host paths "
            "a repository may name; see docs/security.md",
            problems=confinement.problems(text, path, violations),
        )


def _ignore_gitops_table(manifest: Manifest, gitops: GitOps) -> None:
    theirs = manifest.gitops
    if theirs is None:
        return
    if (theirs.require_signed, theirs.allow_rewrites, theirs.apply, set(theirs.allowed_paths)) != (
        gitops.require_signed,
        gitops.allow_rewrites,
        gitops.apply,
        set(gitops.allowed_paths),
    ):
        log.warning(
            "the repository manifest's [gitops] table differs from the controller's and is "
            "ignored: the controller's settings govern every cycle",
            manifest=str(manifest.path),
        )


def _remember(boot: Manifest, **values: str | None) -> None:
    keys = {"last": LAST_HEAD, "failed": FAILED}
    with apply_record.history(boot) as db:
        for name, value in values.items():
            db.set_state(keys[name], value)


def _record_run(boot: Manifest, result: Cycle, started: float, summary: dict[str, object]) -> None:
    with apply_record.history(boot) as db:
        db.record_run(
            "gitops",
            started,
            time.time(),
            result.outcome,
            result.code,
            manifest_digest=boot.digest,
            commit=result.commit,
            summary=summary,
        )


def _results(results: list[Result]) -> list[dict[str, object]]:
    return [{"key": r.action.key, "outcome": r.outcome.value} for r in results]


def _write_outputs(
    report: DriftReport,
    options: CycleOptions,
    code: ExitCode,
    started: float,
    extra: Sequence[Metric],
) -> None:
    try:
        if options.report_dir is not None:
            options.report_dir.mkdir(parents=True, exist_ok=True)
            for fmt, suffix in (("html", "html"), ("json", "json"), ("markdown", "md")):
                files.write_atomic(
                    options.report_dir / f"drift.{suffix}", drift_runs.rendered(report, fmt)
                )
        if options.metrics is not None:
            drift_runs.write_metrics(options.metrics, report, "gitops", code, started, extra=extra)
    except OSError as error:
        raise ReconcileError(
            f"cannot write the cycle's report or metrics: {error}",
            hint="check --report-dir and --metrics; the cycle itself is recorded in the history",
        ) from error
