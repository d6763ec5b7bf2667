"""The lab lock's holder is read without taking the lock, from /proc/locks and the file."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from reconcile.adapters.lock import LabLock, holder

HOLD = """
import sys, time
from pathlib import Path
from reconcile.adapters.lock import LabLock
with LabLock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


def test_nobody_holds_a_fresh_or_released_lock(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    assert holder(path) is None
    with LabLock(path):
        pass
    assert holder(path) is None


def test_a_released_lock_is_answered_without_reading_proc_locks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its holder emptied it: /proc/locks (5-15 ms in the kernel) is not asked."""
    path = tmp_path / "lock"
    with LabLock(path):
        pass
    read = Path.read_text

    def refuse(self: Path, *args: Any, **kwargs: Any) -> str:
        assert str(self) != "/proc/locks", "read /proc/locks"
        return read(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", refuse)
    assert holder(path) is None


def test_another_process_holding_it_is_named_with_its_age(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "held\n"
        found = holder(path, now=time.time() + 3600)
        assert found is not None
        assert found.pid == child.pid
        assert 3599 <= found.age_s <= 3700
        assert "pid" in found.describe()
        child.send_signal(signal.SIGKILL)
        child.wait()
        # The killed holder's words stay in the file, but its flock died with it.
        assert path.read_text()
        assert holder(path) is None
    finally:
        child.kill()
        child.wait()
