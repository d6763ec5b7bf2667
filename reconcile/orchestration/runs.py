"""The runs a user asks for: plan (read-only) and apply (locked), saved plans included."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconcile.adapters import files
from reconcile.adapters.lock import LabLock, lock_state
from reconcile.core.errors import PlanError, ReconcileError
from reconcile.core.plan.graph import Plan
from reconcile.core.plan.report import render_json, render_text
from reconcile.orchestration import pipeline
from reconcile.orchestration.pipeline import Context, PlanOptions

if TYPE_CHECKING:
    from reconcile.core.plan.actions import Action
    from reconcile.orchestration.executor import Result

__all__ = ["ApplyOptions", "PlanOptions", "Planned", "plan", "session"]

SAVED_FORMAT = "reconcile-plan/1"
SAVED_MAX_BYTES = 64 << 20  # a saved plan of 10,000 guests is a few MiB


@dataclass(frozen=True)
class ApplyOptions:
    yes: bool = False
    parallel: int = 4
    lock_timeout_s: float = 0.0
    json_output: bool = False


@dataclass(frozen=True)
class Planned:
    plan: Plan
    manifest_digest: str
    lock_warning: str | None = None  # the lab's lock held past lab.lock_warn_after

    def document(self) -> dict[str, Any]:
        return render_json(self.plan)

    def fingerprint(self) -> str:
        """What the plan would do: equal fingerprints mean the same actions for the same reasons."""
        return hashlib.sha256(json.dumps(self.document(), sort_keys=True).encode()).hexdigest()

    def rendered(self, *, json_output: bool, show_unmanaged: bool = False) -> str:
        """JSON (every unmanaged domain listed), or text (they are counted unless shown)."""
        if json_output:
            return json.dumps(self.document(), indent=2) + "\n"
        return render_text(self.plan, show_unmanaged=show_unmanaged)


def _plan(ctx: Context, options: PlanOptions) -> Planned:
    return Planned(pipeline.make(ctx, options), ctx.manifest.digest)


def plan(path: Path, options: PlanOptions, *, saved: Path | None = None) -> Planned:
    """A plan; takes no lock and changes nothing (but the evaluation cache)."""
    ctx = Context(pipeline.load(path))
    try:
        planned = _plan(ctx, options)
    finally:
        ctx.close()
    lab = ctx.manifest.lab
    planned = replace(planned, lock_warning=lock_state(lab.layout.lock, lab.lock_warn_after_s)[0])
    if saved is not None:
        document = {
            "format": SAVED_FORMAT,
            "manifest": str(path.resolve()),
            "manifest_digest": planned.manifest_digest,
            "targets": list(options.targets),
            "prune": options.prune,
            "fingerprint": planned.fingerprint(),
            "plan": planned.document(),
        }
        try:
            saved.write_text(json.dumps(document, indent=2) + "\n")
        except OSError as exc:
            raise ReconcileError(f"cannot write the plan to {saved}: {exc.strerror}") from None
    return planned


def read_saved(path: Path) -> dict[str, Any] | None:
    """The saved plan in `path`, or None when it is a manifest."""
    try:
        data = files.read_regular(path, SAVED_MAX_BYTES)
    except files.TooLargeError:
        return None  # too large for a saved plan: let the manifest reader say what it is
    except OSError:
        return None  # not readable as a plan: the manifest reader gives the clear error
    if data.lstrip()[:1] != b"{":
        return None
    try:
        document: dict[str, Any] = json.loads(data)
    except ValueError as exc:
        raise PlanError(f"{path}: not a saved plan ({exc})") from None
    if document.get("format") != SAVED_FORMAT:
        raise PlanError(f"{path}: not a saved plan of this version (format {SAVED_FORMAT})")
    return document


@dataclass
class ApplySession:
    """An apply in progress: the lab locked, the plan made under the lock."""

    ctx: Context
    planned: Planned

    def apply(
        self,
        options: ApplyOptions,
        on_result: Callable[[Result], None],
        *,
        on_start: Callable[[Action], None] = lambda _action: None,
        on_progress: Callable[[Action, str], None] = lambda _action, _detail: None,
    ) -> list[Result]:
        """Walk the plan: `on_start` sees each step begin, `on_progress` what a long one
        reports on the way (a kernel build's objects), `on_result` how each ended."""
        # Only an apply with something to do needs the performers and what they import
        # (a plan does not): a no-op's cost is mostly imports (docs/performance.md).
        from reconcile.orchestration.executor import execute  # noqa: PLC0415
        from reconcile.orchestration.kinds import Router  # noqa: PLC0415

        return execute(
            self.planned.plan,
            Router(self.ctx),
            parallel=options.parallel,
            on_result=on_result,
            on_start=on_start,
            on_progress=on_progress,
        )


@contextlib.contextmanager
def session(
    path: Path, options: PlanOptions, apply_options: ApplyOptions
) -> Iterator[ApplySession]:
    saved = read_saved(path)
    manifest_path = Path(saved["manifest"]) if saved else path
    if saved:
        options = PlanOptions(tuple(saved["targets"]), bool(saved["prune"]))
    manifest = pipeline.load(manifest_path)
    pipeline.claim_state_dir(manifest)
    lock_path = manifest.lab.layout.lock
    with LabLock(lock_path, timeout_s=apply_options.lock_timeout_s):
        ctx = Context(manifest)
        try:
            if saved and saved["manifest_digest"] != manifest.digest:
                raise PlanError(
                    f"the saved plan is stale: {manifest_path} changed since it was saved",
                    hint=f"make a new plan: reconcile plan {manifest_path} --out {path}",
                )
            planned = _plan(ctx, options)
            if saved and saved["fingerprint"] != planned.fingerprint():
                raise PlanError(
                    "the saved plan is stale: the lab or its inputs changed since it was saved",
                    hint=f"make a new plan: reconcile plan {manifest_path} --out {path}",
                )
            yield ApplySession(ctx, planned)
        finally:
            ctx.close()
