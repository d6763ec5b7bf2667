"""Reading a console log as `tail -n N -F` does: the last lines, then what is appended.

Only reads. The file is followed by name: a guest's start replaces its log (the old one is
removed, the driver makes a new one), so when the path names another file, or the file
got shorter, reading starts again at the new file's beginning, and `note` says so. A log
that disappears is waited for. Polling (no inotify in the standard library): a few
stat calls a second while nothing is written.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

from reconcile.core.errors import ReconcileError

POLL_S = 0.2
BLOCK = 64 * 1024


def _open(path: Path) -> tuple[int, os.stat_result]:
    """An open regular file (never a FIFO or a device: the open does not block).
    FileNotFoundError when there is none; a ReconcileError when it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ReconcileError(
            f"cannot read {path}: {exc.strerror or exc}",
            hint="run as the user that runs the lab (its console logs are that user's)",
        ) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise ReconcileError(f"{path} is not a regular file; not reading it")
    return fd, st


def tail_start(fd: int, size: int, lines: int) -> int:
    """The offset where the last `lines` lines of the file's first `size` bytes begin (an
    unterminated last line counts as one), reading backwards a block at a time."""
    if lines <= 0 or size == 0:
        return size
    end = size
    if os.pread(fd, 1, size - 1) == b"\n":
        end -= 1  # the last line's own newline does not start a line
    seen = 0
    while end > 0:
        start = max(0, end - BLOCK)
        block = os.pread(fd, end - start, start)
        cut = len(block)
        while (cut := block.rfind(b"\n", 0, cut)) != -1:
            seen += 1
            if seen == lines:
                return start + cut + 1
        end = start
    return 0


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def follow(
    path: Path,
    *,
    lines: int,
    keep_following: bool,
    emit: Callable[[bytes], None],
    note: Callable[[str], None],
    poll_s: float = POLL_S,
) -> None:
    """Emit the last `lines` lines of `path`, then (when `keep_following`) everything written
    to it, until interrupted (KeyboardInterrupt propagates). FileNotFoundError when `path`
    does not exist at the start; a ReconcileError when it cannot be read."""
    fd, current = _open(path)
    try:
        offset = tail_start(fd, current.st_size, lines)
        waiting = False
        while True:
            data = os.pread(fd, BLOCK, offset)
            if data:
                emit(data)
                offset += len(data)
                continue
            if not keep_following:
                return
            try:
                now = os.stat(path)
            except FileNotFoundError:
                if not waiting:
                    note(f"{path} was removed; waiting for it to come back")
                    waiting = True
                time.sleep(poll_s)
                continue
            if not _same(now, current):
                try:
                    new_fd, new = _open(path)
                except FileNotFoundError:
                    continue
                os.close(fd)
                fd, current, offset, waiting = new_fd, new, 0, False
                note(f"{path} was replaced (the guest started again); following the new file")
                continue
            if now.st_size < offset:
                note(f"{path} was truncated; reading it from the start")
                offset = 0
                continue
            time.sleep(poll_s)
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
