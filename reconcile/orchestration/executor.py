"""Walking a plan: a bounded worker pool, dependencies first, failures contained.

Each action is re-checked against the world just before it runs (already satisfied: skip;
drifted some other way: stop that branch as stale). A failed or stale action blocks its
dependents; independent branches go on.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, TypeVar

from reconcile import progress
from reconcile.core.errors import DegradedError, ReconcileError, RolledBackError
from reconcile.core.exits import ExitCode
from reconcile.logs import get_logger

if TYPE_CHECKING:  # a no-op apply records its run without loading the action types
    from reconcile.core.plan.actions import Action
    from reconcile.core.plan.graph import Plan

log = get_logger(__name__)

FAULT_ENV = "RECONCILE_FAULT"  # test hook: "kill-before:KEY" or "kill-after:KEY"


class Outcome(StrEnum):
    DONE = "done"
    DEGRADED = "degraded"  # done, but the subject reports failed units (its dependents run)
    SKIPPED = "skipped"  # already satisfied when re-checked
    FAILED = "failed"
    STALE = "stale"  # the world changed since the plan: not acted on
    BLOCKED = "blocked"  # a dependency failed
    ROLLED_BACK = "rolled-back"  # failed, and the host is back on its previous system

    def ok(self) -> bool:
        return self in (Outcome.DONE, Outcome.DEGRADED, Outcome.SKIPPED)


class Check(StrEnum):
    NEEDED = "needed"
    SATISFIED = "satisfied"


class SubjectStatus(StrEnum):
    """One guest's or host's status in an apply's summary, as printed there."""

    OK = "ok"
    FAILED = "FAILED"
    ROLLED_BACK = "ROLLED BACK"
    DEGRADED = "DEGRADED"
    UNKNOWN = "UNKNOWN"  # not observed: not acted on
    CONFLICT = "CONFLICT"  # cannot converge: not acted on
    BLOCKED = "BLOCKED"  # nothing of it ran: it waits for what failed, or cannot be planned


class StaleError(ReconcileError):
    """The subject is not in the state the plan expected."""


@dataclass(frozen=True)
class Result:
    action: Action
    outcome: Outcome
    seconds: float = 0.0
    message: str = ""


A_contra = TypeVar("A_contra", contravariant=True)


class Performer(Protocol[A_contra]):
    """What the executor needs of the world, per action (of the types it performs)."""

    def check(self, action: A_contra) -> Check: ...

    def perform(self, action: A_contra) -> None: ...


def _fault(when: str, key: str) -> None:
    if os.environ.get(FAULT_ENV) == f"{when}:{key}":
        log.warning("fault injection: SIGKILL", at=f"{when}:{key}")
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class _Watch:
    """Who is told of each start and of the progress a running action reports."""

    on_start: Callable[[Action], None]
    on_progress: Callable[[Action, str], None]


def _run_one(performer: Performer[Action], action: Action, watch: _Watch) -> Result:
    started = time.monotonic()
    bound = log.bind(action=action.key, subject=action.subject)
    try:
        _fault("kill-before", action.key)
        watch.on_start(action)
        if performer.check(action) is Check.SATISFIED:
            bound.info("already satisfied, skipping")
            return Result(action, Outcome.SKIPPED, time.monotonic() - started)
        bound.info("start")
        with progress.reporting(lambda detail: watch.on_progress(action, detail)):
            performer.perform(action)
        _fault("kill-after", action.key)
    except DegradedError as error:
        bound.warning("done, degraded", error=error.message)
        return Result(action, Outcome.DEGRADED, time.monotonic() - started, error.message)
    except RolledBackError as error:
        bound.error("rolled back", error=error.message)
        return Result(action, Outcome.ROLLED_BACK, time.monotonic() - started, error.message)
    except StaleError as error:
        bound.error("plan is stale", error=error.message)
        return Result(action, Outcome.STALE, time.monotonic() - started, error.message)
    except ReconcileError as error:
        message = error.message + (f"\nhint: {error.hint}" if error.hint else "")
        bound.error("failed", error=error.message)
        return Result(action, Outcome.FAILED, time.monotonic() - started, message)
    except OSError as error:  # a file the action needed: its failure, not the run's
        bound.error("failed", error=str(error), exc_info=True)
        return Result(action, Outcome.FAILED, time.monotonic() - started, str(error))
    except Exception as error:  # a bug: this action failed, the run goes on and is reported
        bound.error("internal error", error=repr(error), exc_info=True)
        message = f"internal error: {type(error).__name__}: {error}"
        hint = "\nhint: this is a bug in reconcile; run with --debug -v for the traceback"
        return Result(action, Outcome.FAILED, time.monotonic() - started, message + hint)
    seconds = time.monotonic() - started
    bound.info("done", seconds=round(seconds, 2))
    return Result(action, Outcome.DONE, seconds)


def execute(
    plan: Plan,
    performer: Performer[Action],
    *,
    parallel: int = 4,
    on_result: Callable[[Result], None] = lambda _r: None,
    on_start: Callable[[Action], None] = lambda _a: None,
    on_progress: Callable[[Action, str], None] = lambda _a, _detail: None,
) -> list[Result]:
    """Run the plan's actions; returns their results in the plan's order.

    `on_result` sees each result as it is known (a blocked action's too, which never
    starts); `on_start` each action as a worker takes it up (before its re-check), and
    `on_progress` what a running action reports of its progress (`reconcile.progress`).
    Start and progress come from the worker threads, results from the calling thread.
    """
    watch = _Watch(on_start, on_progress)
    keys = plan.action_keys()
    rank = {key: i for i, key in enumerate(keys)}
    waiting = {key: len(plan.dependencies(key)) for key in keys}
    results: dict[str, Result] = {}
    ready = sorted((k for k, n in waiting.items() if n == 0), key=rank.__getitem__)

    def block(key: str, cause: str) -> None:
        for descendant in sorted(plan.descendants(key), key=rank.__getitem__):
            if descendant not in results:
                result = Result(
                    plan.action(descendant),
                    Outcome.BLOCKED,
                    message=f"not run: {cause} did not succeed",
                )
                results[descendant] = result
                on_result(result)

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        running: dict[Future[Result], str] = {}
        while ready or running:
            while ready and len(running) < max(1, parallel):
                key = ready.pop(0)
                if key in results:
                    continue
                running[pool.submit(_run_one, performer, plan.action(key), watch)] = key
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: rank[running[f]]):
                key = running.pop(future)
                result = future.result()
                results[key] = result
                on_result(result)
                if not result.outcome.ok():
                    block(key, key)
                    continue
                for successor in plan.dependents(key):
                    waiting[successor] -= 1
                    if waiting[successor] == 0 and successor not in results:
                        ready.append(successor)
                ready.sort(key=rank.__getitem__)
    return [results[k] for k in sorted(results, key=rank.__getitem__)]


def subject_status(items: list[Result]) -> SubjectStatus:
    """One subject's status. Its steps after a rollback are blocked: that is the rollback.
    A subject none of whose steps ran is blocked (by another's failure: the messages name
    it); one blocked half-way failed."""
    outcomes = {r.outcome for r in items}
    if outcomes == {Outcome.BLOCKED}:
        return SubjectStatus.BLOCKED
    if outcomes & {Outcome.FAILED, Outcome.STALE}:
        return SubjectStatus.FAILED
    if Outcome.ROLLED_BACK in outcomes:
        return SubjectStatus.ROLLED_BACK
    if Outcome.BLOCKED in outcomes:
        return SubjectStatus.FAILED
    if Outcome.DEGRADED in outcomes:
        return SubjectStatus.DEGRADED
    return SubjectStatus.OK


def by_subject(results: list[Result]) -> dict[str, list[Result]]:
    by_subject: dict[str, list[Result]] = {}
    for result in results:
        by_subject.setdefault(result.action.subject, []).append(result)
    return by_subject


def exit_code(results: list[Result], unknown: list[str]) -> ExitCode:
    """1 beats 4 beats 3: an error needs a person before anything else does."""
    statuses = {subject_status(items) for items in by_subject(results).values()}
    if unknown or statuses & {SubjectStatus.FAILED, SubjectStatus.BLOCKED}:
        return ExitCode.ERROR
    if SubjectStatus.ROLLED_BACK in statuses:
        return ExitCode.ROLLED_BACK
    if SubjectStatus.DEGRADED in statuses:
        return ExitCode.DEGRADED
    return ExitCode.OK
