"""The executor against a recording performer (its one seam): order, failure containment,
skip and stale, the parallel bound, and what a run's results add up to."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping

import pytest

from reconcile import progress
from reconcile.core.errors import DegradedError, ReconcileError, RolledBackError
from reconcile.core.plan.actions import Action, DestroyGuest, GuestRef, ShutdownGuest, UndefineGuest
from reconcile.core.plan.diff import Diff
from reconcile.core.plan.graph import Plan
from reconcile.orchestration.executor import (
    Check,
    Outcome,
    Result,
    StaleError,
    execute,
    exit_code,
    subject_status,
)

# The exit codes of README "Exit codes" (Terraform's where it has one), as numbers: they are
# what scripts see.
EXIT_OK, EXIT_ERROR, EXIT_DEGRADED, EXIT_ROLLED_BACK = 0, 1, 3, 4


def ref(guest: str) -> GuestRef:
    return GuestRef(guest, "local", f"t-{guest}")


def step(key: str) -> Action:
    """A real typed action whose key is `key` ("<guest>/<shutdown|destroy|undefine>")."""
    guest, kind = key.split("/")
    match kind:
        case "shutdown":
            action: Action = ShutdownGuest(ref(guest), 1.0)
        case "destroy":
            action = DestroyGuest(ref(guest))
        case "undefine":
            action = UndefineGuest(ref(guest))
        case _:
            raise AssertionError(key)
    assert action.key == key
    return action


def make(keys: Iterable[str], edges: Iterable[tuple[str, str]] = ()) -> Plan:
    return Plan(
        diff=Diff("t", (), ()),
        nodes={key: step(key) for key in keys},
        edges=tuple(edges),
        to_build=(),
    )


class Recorder:
    """Performs nothing; records every call, and answers or raises as it is told, by key."""

    def __init__(
        self,
        *,
        checks: Mapping[str, Check | Exception] | None = None,
        raises: Mapping[str, Exception] | None = None,
        delay_s: float = 0.0,
        barrier: threading.Barrier | None = None,
    ) -> None:
        self.checks = dict(checks or {})
        self.raises = dict(raises or {})
        self.delay_s = delay_s
        self.barrier = barrier
        self.events: list[tuple[str, str]] = []  # ("check" | "start" | "end", key)
        self.active = 0
        self.peak = 0
        self._lock = threading.Lock()

    def check(self, action: Action) -> Check:
        with self._lock:
            self.events.append(("check", action.key))
        answer = self.checks.get(action.key, Check.NEEDED)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def perform(self, action: Action) -> None:
        with self._lock:
            self.events.append(("start", action.key))
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            if self.barrier is not None:
                self.barrier.wait()  # breaks (and the test fails) unless all parties overlap
            time.sleep(self.delay_s)
            if action.key in self.raises:
                raise self.raises[action.key]
        finally:
            with self._lock:
                self.active -= 1
                self.events.append(("end", action.key))

    def keys(self, event: str) -> list[str]:
        return [key for what, key in self.events if what == event]


def outcomes(results: list[Result]) -> dict[str, Outcome]:
    return {r.action.key: r.outcome for r in results}


def messages(results: list[Result]) -> dict[str, str]:
    return {r.action.key: r.message for r in results}


# -- order --------------------------------------------------------------------------------

# Alphabetically a/undefine would come first, but it waits for z/destroy; m waits for b.
ORDERED = make(
    ["a/undefine", "b/shutdown", "m/destroy", "m/undefine", "z/destroy"],
    [("z/destroy", "a/undefine"), ("b/shutdown", "m/destroy"), ("m/destroy", "m/undefine")],
)
EXPECTED_ORDER = ["b/shutdown", "m/destroy", "m/undefine", "z/destroy", "a/undefine"]


def test_one_worker_runs_the_lexicographic_topological_order_every_time() -> None:
    assert ORDERED.action_keys() == EXPECTED_ORDER
    for _ in range(3):
        performer = Recorder()
        results = execute(ORDERED, performer, parallel=1)
        assert performer.keys("start") == EXPECTED_ORDER
        assert [r.action.key for r in results] == EXPECTED_ORDER
        assert all(r.outcome is Outcome.DONE for r in results)
        # each action is re-checked once, just before it is performed
        expected_events = [(e, k) for k in EXPECTED_ORDER for e in ("check", "start", "end")]
        assert performer.events == expected_events


@pytest.mark.parametrize("parallel", [2, 4])
def test_with_many_workers_dependencies_end_before_dependents_start(parallel: int) -> None:
    # a diamond under each of two roots, and a chain across them
    plan = make(
        ["a/shutdown", "a/destroy", "b/shutdown", "a/undefine", "c/destroy", "c/undefine"],
        [
            ("a/shutdown", "a/destroy"),
            ("a/shutdown", "b/shutdown"),
            ("a/destroy", "a/undefine"),
            ("b/shutdown", "a/undefine"),
            ("c/destroy", "c/undefine"),
            ("c/undefine", "b/shutdown"),
        ],
    )
    for _ in range(3):
        performer = Recorder(delay_s=0.003)
        results = execute(plan, performer, parallel=parallel)
        assert [r.action.key for r in results] == plan.action_keys()
        assert all(r.outcome is Outcome.DONE for r in results)
        position = {event: i for i, event in enumerate(performer.events)}
        for dependency, dependent in plan.edges:
            assert position[("end", dependency)] < position[("check", dependent)]


def test_the_re_check_sees_what_the_dependencies_did() -> None:
    """Checked when it runs, not when planned: a/destroy's effect satisfies a/undefine."""

    class World(Recorder):
        def __init__(self) -> None:
            super().__init__()
            self.gone: set[str] = set()

        def check(self, action: Action) -> Check:
            super().check(action)
            return Check.SATISFIED if action.key in self.gone else Check.NEEDED

        def perform(self, action: Action) -> None:
            super().perform(action)
            if action.key == "a/destroy":
                self.gone.add("a/undefine")  # say, it was transient: stopping removed it

    plan = make(["a/destroy", "a/undefine"], [("a/destroy", "a/undefine")])
    world = World()
    results = execute(plan, world, parallel=4)
    assert outcomes(results) == {"a/destroy": Outcome.DONE, "a/undefine": Outcome.SKIPPED}
    assert world.keys("start") == ["a/destroy"]


# -- failures -----------------------------------------------------------------------------

# a's chain; b's chain; a/undefine also waits for b/destroy, which succeeds
CHAINS = make(
    ["a/shutdown", "a/destroy", "a/undefine", "b/destroy", "b/undefine"],
    [
        ("a/shutdown", "a/destroy"),
        ("a/destroy", "a/undefine"),
        ("b/destroy", "b/undefine"),
        ("b/destroy", "a/undefine"),
    ],
)


@pytest.mark.parametrize("parallel", [1, 4])
def test_a_failure_blocks_only_its_descendants(parallel: int) -> None:
    seen: list[Result] = []
    performer = Recorder(
        raises={"a/shutdown": ReconcileError("it hung", hint="read its console")}, delay_s=0.002
    )
    results = execute(CHAINS, performer, parallel=parallel, on_result=seen.append)
    assert outcomes(results) == {
        "a/shutdown": Outcome.FAILED,
        "a/destroy": Outcome.BLOCKED,
        "a/undefine": Outcome.BLOCKED,
        "b/destroy": Outcome.DONE,
        "b/undefine": Outcome.DONE,
    }
    assert messages(results)["a/shutdown"] == "it hung\nhint: read its console"
    # the cause named is the failed action, also for a descendant two steps down
    assert messages(results)["a/destroy"] == "not run: a/shutdown did not succeed"
    assert messages(results)["a/undefine"] == "not run: a/shutdown did not succeed"
    # blocked actions are neither re-checked nor performed
    assert sorted(performer.keys("check")) == ["a/shutdown", "b/destroy", "b/undefine"]
    assert sorted(performer.keys("start")) == ["a/shutdown", "b/destroy", "b/undefine"]
    # every action is reported once, blocked ones included
    assert sorted(r.action.key for r in seen) == sorted(CHAINS.nodes)
    assert [r.action.key for r in results] == CHAINS.action_keys()
    assert exit_code(results, []) == EXIT_ERROR


@pytest.mark.parametrize("parallel", [1, 4])
def test_starts_and_progress_are_reported_around_each_run_action(parallel: int) -> None:
    """on_start before the re-check (a skipped action starts too, a blocked one never),
    on_progress with what the performer reports (`reconcile.progress`), on_result last."""
    events: list[tuple[str, str]] = []
    lock = threading.Lock()

    class Reporting(Recorder):
        def perform(self, action: Action) -> None:
            progress.report(f"half of {action.key}")
            super().perform(action)

    def note(what: str, key: str) -> None:
        with lock:
            events.append((what, key))

    performer = Reporting(
        checks={"b/destroy": Check.SATISFIED}, raises={"a/shutdown": ReconcileError("hung")}
    )
    execute(
        CHAINS,
        performer,
        parallel=parallel,
        on_start=lambda action: note("start", action.key),
        on_progress=lambda action, detail: note(f"progress {detail}", action.key),
        on_result=lambda result: note(f"result {result.outcome}", result.action.key),
    )
    by_key: dict[str, list[str]] = {}
    for what, key in events:
        by_key.setdefault(key, []).append(what)
    assert by_key == {
        "a/shutdown": ["start", "progress half of a/shutdown", "result failed"],
        "a/destroy": ["result blocked"],
        "a/undefine": ["result blocked"],
        "b/destroy": ["start", "result skipped"],
        "b/undefine": ["start", "progress half of b/undefine", "result done"],
    }
    progress.report("after the run: goes nowhere")  # no sink outside an action


@pytest.mark.parametrize("where", ["check", "perform"])
def test_stale_is_not_acted_on_and_blocks_its_dependents(where: str) -> None:
    stale = StaleError("domain 't-a' carries the mark of guest 'x' now")
    performer = (
        Recorder(checks={"a/destroy": stale})
        if where == "check"
        else Recorder(raises={"a/destroy": stale})
    )
    results = execute(CHAINS, performer, parallel=2)
    assert outcomes(results) == {
        "a/shutdown": Outcome.DONE,
        "a/destroy": Outcome.STALE,
        "a/undefine": Outcome.BLOCKED,
        "b/destroy": Outcome.DONE,
        "b/undefine": Outcome.DONE,
    }
    assert messages(results)["a/destroy"] == stale.message
    assert messages(results)["a/undefine"] == "not run: a/destroy did not succeed"
    assert ("a/destroy" in performer.keys("start")) is (where == "perform")
    assert "a/undefine" not in performer.keys("check")
    assert subject_status([r for r in results if r.action.subject == "a"]) == "FAILED"
    assert exit_code(results, []) == EXIT_ERROR


def test_satisfied_is_skipped_and_its_dependents_run() -> None:
    performer = Recorder(checks={"a/shutdown": Check.SATISFIED, "b/destroy": Check.SATISFIED})
    results = execute(CHAINS, performer, parallel=2)
    assert outcomes(results) == {
        "a/shutdown": Outcome.SKIPPED,
        "a/destroy": Outcome.DONE,
        "a/undefine": Outcome.DONE,
        "b/destroy": Outcome.SKIPPED,
        "b/undefine": Outcome.DONE,
    }
    assert sorted(performer.keys("start")) == ["a/destroy", "a/undefine", "b/undefine"]
    assert exit_code(results, []) == EXIT_OK


def test_degraded_is_done_and_its_dependents_run() -> None:
    performer = Recorder(raises={"a/destroy": DegradedError("2 units failed")})
    results = execute(CHAINS, performer, parallel=2)
    assert outcomes(results)["a/destroy"] is Outcome.DEGRADED
    assert messages(results)["a/destroy"] == "2 units failed"
    assert outcomes(results)["a/undefine"] is Outcome.DONE
    assert "a/undefine" in performer.keys("start")
    assert subject_status([r for r in results if r.action.subject == "a"]) == "DEGRADED"
    assert exit_code(results, []) == EXIT_DEGRADED


def test_rolled_back_blocks_the_subjects_next_steps() -> None:
    performer = Recorder(raises={"a/destroy": RolledBackError("health check failed")})
    results = execute(CHAINS, performer, parallel=2)
    assert outcomes(results) == {
        "a/shutdown": Outcome.DONE,
        "a/destroy": Outcome.ROLLED_BACK,
        "a/undefine": Outcome.BLOCKED,
        "b/destroy": Outcome.DONE,
        "b/undefine": Outcome.DONE,
    }
    assert messages(results)["a/destroy"] == "health check failed"
    # the steps after a rollback are blocked: that is the rollback, not a second failure
    assert subject_status([r for r in results if r.action.subject == "a"]) == "ROLLED BACK"
    assert exit_code(results, []) == EXIT_ROLLED_BACK


@pytest.mark.parametrize("where", ["check", "perform"])
def test_an_os_error_fails_the_action_not_the_run(where: str) -> None:
    error = PermissionError(13, "Permission denied", "/state/guests/a/serial.log")
    performer = (
        Recorder(checks={"a/shutdown": error})
        if where == "check"
        else Recorder(raises={"a/shutdown": error})
    )
    results = execute(CHAINS, performer, parallel=2)
    assert outcomes(results) == {
        "a/shutdown": Outcome.FAILED,
        "a/destroy": Outcome.BLOCKED,
        "a/undefine": Outcome.BLOCKED,
        "b/destroy": Outcome.DONE,
        "b/undefine": Outcome.DONE,
    }
    assert messages(results)["a/shutdown"] == str(error)
    assert "/state/guests/a/serial.log" in messages(results)["a/shutdown"]


# -- the parallel bound -------------------------------------------------------------------

SIX = make([f"{g}/destroy" for g in "abcdef"])


@pytest.mark.parametrize("parallel", [1, 2, 3])
def test_the_parallel_bound_is_reached_and_never_exceeded(parallel: int) -> None:
    # Each perform waits until `parallel` of them are in flight: were fewer run at once the
    # barrier would time out (and the run fail); were more, the peak would show it.
    performer = Recorder(barrier=threading.Barrier(parallel, timeout=2.0), delay_s=0.005)
    results = execute(SIX, performer, parallel=parallel)
    assert all(r.outcome is Outcome.DONE for r in results)
    assert performer.peak == parallel


def test_a_parallel_bound_below_one_runs_one_at_a_time() -> None:
    performer = Recorder(delay_s=0.002)
    results = execute(SIX, performer, parallel=0)
    assert [r.outcome for r in results] == [Outcome.DONE] * 6
    assert performer.peak == 1


# -- what the results add up to -----------------------------------------------------------


def results_of(**by_subject: Iterable[Outcome]) -> list[Result]:
    kinds = ["shutdown", "destroy", "undefine"]
    return [
        Result(step(f"{subject}/{kinds[i]}"), outcome)
        for subject, items in by_subject.items()
        for i, outcome in enumerate(items)
    ]


DONE, SKIPPED, DEGRADED = Outcome.DONE, Outcome.SKIPPED, Outcome.DEGRADED
FAILED, STALE, BLOCKED = Outcome.FAILED, Outcome.STALE, Outcome.BLOCKED
ROLLED_BACK = Outcome.ROLLED_BACK


@pytest.mark.parametrize(
    ("items", "status"),
    [
        ([DONE, SKIPPED], "ok"),
        ([DONE, DEGRADED], "DEGRADED"),
        ([DEGRADED, BLOCKED], "FAILED"),
        ([BLOCKED], "BLOCKED"),  # nothing of it ran: blocked by another subject's failure
        ([STALE], "FAILED"),
        ([ROLLED_BACK, BLOCKED], "ROLLED BACK"),
        ([ROLLED_BACK, FAILED], "FAILED"),
        ([ROLLED_BACK, STALE], "FAILED"),
    ],
)
def test_subject_status(items: list[Outcome], status: str) -> None:
    assert subject_status(results_of(a=items)) == status


@pytest.mark.parametrize(
    ("by_subject", "unknown", "code"),
    [
        ({}, [], EXIT_OK),
        ({"a": [DONE, SKIPPED], "b": [SKIPPED]}, [], EXIT_OK),
        ({"a": [DONE], "b": [DEGRADED]}, [], EXIT_DEGRADED),
        ({"a": [DEGRADED], "b": [ROLLED_BACK, BLOCKED]}, [], EXIT_ROLLED_BACK),
        ({"a": [ROLLED_BACK], "b": [FAILED]}, [], EXIT_ERROR),  # 1 beats 4
        ({"a": [DEGRADED], "b": [STALE]}, [], EXIT_ERROR),  # 1 beats 3
        ({"a": [DEGRADED], "b": [BLOCKED]}, [], EXIT_ERROR),
        ({"a": [DONE]}, ["c"], EXIT_ERROR),  # something could not be observed
        ({"a": [ROLLED_BACK], "b": [DEGRADED]}, ["c"], EXIT_ERROR),
        ({}, ["c"], EXIT_ERROR),
    ],
)
def test_exit_code(by_subject: dict[str, list[Outcome]], unknown: list[str], code: int) -> None:
    assert exit_code(results_of(**by_subject), unknown) == code


def test_exit_code_of_a_run_with_a_rollback_a_degraded_subject_and_a_failure() -> None:
    plan = make(["a/destroy", "b/destroy", "c/destroy"])
    raises: dict[str, Exception] = {
        "a/destroy": RolledBackError("rolled back"),
        "b/destroy": DegradedError("degraded"),
    }
    assert exit_code(execute(plan, Recorder(raises=raises)), []) == EXIT_ROLLED_BACK
    raises["c/destroy"] = OSError("disk full")
    assert exit_code(execute(plan, Recorder(raises=raises)), []) == EXIT_ERROR


def test_a_bug_in_a_performer_fails_its_action_and_the_run_goes_on() -> None:
    """Anything else raised (a TypeError, an unwrapped library error) is contained too:
    the action is FAILED with what happened, its dependents blocked, the rest done."""
    plan = make(["a/destroy", "a/undefine", "b/destroy"], [("a/destroy", "a/undefine")])
    results = execute(plan, Recorder(raises={"a/destroy": TypeError("boom")}), parallel=2)
    assert outcomes(results) == {
        "a/destroy": Outcome.FAILED,
        "a/undefine": Outcome.BLOCKED,
        "b/destroy": Outcome.DONE,
    }
    assert messages(results)["a/destroy"].startswith("internal error: TypeError: boom\nhint:")
    assert exit_code(results, []) == EXIT_ERROR
