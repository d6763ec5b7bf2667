"""The command chokepoint, with real processes: bounded time, nothing left behind, no secrets."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from reconcile.adapters import process
from reconcile.core.errors import CommandError


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_timeout_kills_the_command_and_what_it_started(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    script = f"sleep 300 & echo $! > {pidfile}; echo waiting; wait"
    started = time.monotonic()
    with pytest.raises(CommandError) as caught:
        process.run(["sh", "-c", script], timeout=1)
    assert time.monotonic() - started < 10
    assert caught.value.returncode == -1
    assert caught.value.retryable
    assert "timed out after 1s and was killed" in caught.value.output_tail
    assert "waiting" in caught.value.output_tail  # what it said before it hung
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)


def test_run_logged_timeout_kills_and_keeps_the_log(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    with pytest.raises(CommandError) as caught:
        process.run_logged(["sh", "-c", "echo compiling; sleep 300"], log, timeout=1)
    assert "timed out after 1s" in caught.value.output_tail
    assert "compiling" in log.read_text()


def test_secrets_are_not_inherited_unless_handed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILE_TEST_SECRET", "hunter2")
    monkeypatch.setattr(process, "_SECRET_NAMES", set())
    assert "hunter2" in process.run(["env"]).stdout  # not registered: inherited as usual
    process.hide_from_children(["RECONCILE_TEST_SECRET"])
    assert "hunter2" not in process.run(["env"]).stdout
    log_env = process.run(["env"], env={"RECONCILE_TEST_SECRET": "given"}).stdout
    assert "RECONCILE_TEST_SECRET=given" in log_env
    assert os.environ["RECONCILE_TEST_SECRET"] == "hunter2"  # this process still reads it


def test_stdin_is_closed_unless_given() -> None:
    # A command that reads stdin must not hang on ours.
    assert process.run(["cat"], timeout=5).stdout == ""
    assert process.run(["cat"], stdin="fed", timeout=5).stdout == "fed"
