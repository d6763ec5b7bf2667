"""Resume after a kill: an apply SIGKILLed at an action boundary (RECONCILE_FAULT) leaves
the world with exactly the actions before it, and the next apply skips those and does
the rest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from reconcile.orchestration.executor import FAULT_ENV, Outcome, execute
from tests.conftest import ROOT
from tests.orchestration.world import ORDER, PLAN, WorldPerformer


def apply_in_child(world: Path, fault: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, FAULT_ENV: fault}
    return subprocess.run(
        [sys.executable, "-m", "tests.orchestration.world", str(world)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_order_is_one_guest_after_the_other() -> None:
    assert ORDER == ["a/shutdown", "a/destroy", "a/undefine", "b/destroy", "b/undefine"]


@pytest.mark.parametrize(
    ("fault", "done_before"),
    [
        ("kill-after:a/destroy", ["a/shutdown", "a/destroy"]),
        ("kill-before:a/destroy", ["a/shutdown"]),
        ("kill-after:b/destroy", ["a/shutdown", "a/destroy", "a/undefine", "b/destroy"]),
    ],
)
def test_a_killed_apply_is_finished_by_the_next(
    tmp_path: Path, fault: str, done_before: list[str]
) -> None:
    world = tmp_path / "world.json"
    child = apply_in_child(world, fault)
    assert child.returncode == -signal.SIGKILL, child.stderr
    performer = WorldPerformer(world)
    assert performer.done() == done_before

    results = execute(PLAN, performer, parallel=4)
    expected = {k: Outcome.SKIPPED if k in done_before else Outcome.DONE for k in ORDER}
    assert {r.action.key: r.outcome for r in results} == expected
    # every action done once: nothing done before is done again
    assert sorted(performer.done()) == sorted(ORDER)
    assert performer.done()[: len(done_before)] == done_before


def test_without_a_fault_at_one_of_its_keys_the_child_runs_to_the_end(tmp_path: Path) -> None:
    world = tmp_path / "world.json"
    child = apply_in_child(world, "kill-after:c/destroy")
    assert child.returncode == 0, child.stderr
    assert WorldPerformer(world).done() == ORDER
