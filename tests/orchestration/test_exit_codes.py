"""Exit codes and subject statuses are enums inside, and print as the numbers and words
scripts and people have always seen (README "Exit codes", the apply summary)."""

from __future__ import annotations

import json

from reconcile.core.errors import ReconcileError
from reconcile.core.exits import ExitCode
from reconcile.orchestration.executor import Outcome, SubjectStatus, exit_code, subject_status
from tests.orchestration.test_executor import results_of


def test_exit_codes_are_the_documented_numbers() -> None:
    assert {c.name: int(c) for c in ExitCode} == {
        "OK": 0,
        "ERROR": 1,
        "CHANGES": 2,
        "DEGRADED": 3,
        "ROLLED_BACK": 4,
        "INTERRUPTED": 130,
    }
    assert ReconcileError("x").exit_code is ExitCode.ERROR


def test_an_exit_code_prints_and_serialises_as_its_number() -> None:
    code = ExitCode.ROLLED_BACK
    assert (f"(exit {code})", f"{code:>4}", str(code)) == ("(exit 4)", "   4", "4")
    assert f"apply-exit-{code}" == "apply-exit-4"  # a gitops cycle's recorded outcome
    assert json.dumps({"exit_code": code}) == '{"exit_code": 4}'


def test_statuses_are_enums_that_print_as_before() -> None:
    status = subject_status(results_of(a=[Outcome.ROLLED_BACK, Outcome.BLOCKED]))
    assert status is SubjectStatus.ROLLED_BACK
    assert f"{status:11}|" == "ROLLED BACK|"
    assert f"{SubjectStatus.OK:11}|" == "ok         |"
    assert [s.value for s in SubjectStatus] == [
        "ok",
        "FAILED",
        "ROLLED BACK",
        "DEGRADED",
        "UNKNOWN",
        "CONFLICT",
        "BLOCKED",
    ]
    assert exit_code(results_of(a=[Outcome.DEGRADED]), []) is ExitCode.DEGRADED
    assert exit_code([], ["unobserved"]) is ExitCode.ERROR
