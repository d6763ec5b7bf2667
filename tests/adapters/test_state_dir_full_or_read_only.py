"""A read-only or full state directory is a clear error naming the path, never a traceback.

Read-only: a bind mount of a temporary directory onto itself, remounted read-only. Full: a
tiny tmpfs filled up. Both need root (the test machine runs as root) and are undone in a
`finally`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from reconcile.adapters.history import History, HistoryError
from reconcile.adapters.lock import LabLock
from reconcile.core.errors import LockError

FILE = "history.sqlite"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")


@contextmanager
def read_only(directory: Path) -> Iterator[Path]:
    subprocess.run(["mount", "--bind", str(directory), str(directory)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(directory)], check=True)
        yield directory
    finally:
        subprocess.run(["umount", str(directory)], check=True)


@contextmanager
def full(directory: Path) -> Iterator[Path]:
    directory.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(directory)], check=True)
    try:
        fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass  # full
        finally:
            os.close(fd)
        yield directory
    finally:
        subprocess.run(["umount", str(directory)], check=True)


def test_lock_in_a_read_only_state_directory(tmp_path: Path) -> None:
    with read_only(tmp_path), pytest.raises(LockError) as caught:
        LabLock(tmp_path / "lock").__enter__()
    assert str(tmp_path / "lock") in caught.value.message
    assert "Read-only file system" in caught.value.message
    assert caught.value.hint is not None and "read-only or full" in caught.value.hint


def test_lock_whose_existing_file_cannot_be_written_there(tmp_path: Path) -> None:
    (tmp_path / "lock").write_text("")
    with read_only(tmp_path), pytest.raises(LockError, match="cannot take the lab's lock"):
        LabLock(tmp_path / "lock").__enter__()


def test_lock_in_a_full_state_directory(tmp_path: Path) -> None:
    with full(tmp_path / "state") as state, pytest.raises(LockError) as caught:
        LabLock(state / "lock").__enter__()
    assert str(state / "lock") in caught.value.message
    assert "No space left on device" in caught.value.message


def test_history_in_a_read_only_state_directory(tmp_path: Path) -> None:
    with read_only(tmp_path), pytest.raises(HistoryError) as caught:
        History.open(tmp_path / "history.sqlite")
    assert str(tmp_path / "history.sqlite") in caught.value.message
    assert caught.value.hint is not None and str(tmp_path) in caught.value.hint


def test_an_existing_history_on_a_read_only_file_system(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    History.open(path).close()
    with read_only(tmp_path), pytest.raises(HistoryError) as caught, History.open(path) as h:
        h.record_run("drift", 1.0, 2.0, "ok", 0, summary={})
    assert str(path) in caught.value.message


def test_history_in_a_full_state_directory(tmp_path: Path) -> None:
    state = tmp_path / "state"
    pad = {"pad": "x" * 4000}
    with full(state), pytest.raises(HistoryError) as caught, History.open(state / FILE) as h:
        for i in range(1000):
            h.record_run("drift", 1.0, 2.0, "ok", 0, summary={**pad, "i": i})
    assert str(state / FILE) in caught.value.message
    assert caught.value.hint is not None
