"""One lock per lab: flock on a file in its state directory, naming its holder.

flock (not lockf) so that the lock belongs to the open file and dies with the process, a
SIGKILLed apply included. The file's content says who holds it, for the error message.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType

from reconcile.core.errors import LockError


def flock_within(fd: int, timeout_s: float, poll_s: float = 0.05) -> bool:
    """Take an exclusive flock on `fd`, waiting at most `timeout_s`; False if not taken."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll_s)


class LabLock:
    def __init__(self, path: Path, *, timeout_s: float = 0.0) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self._fd: int | None = None

    def __enter__(self) -> LabLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if not flock_within(fd, self.timeout_s):
            holder = _read_holder(self.path)
            os.close(fd)
            raise LockError(
                f"the lab is locked by {holder}",
                hint="wait for that run to finish, or pass --lock-timeout DURATION",
            )
        os.ftruncate(fd, 0)
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "argv": sys.argv,
        }
        os.write(fd, json.dumps(info).encode())
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        argv = " ".join(info.get("argv", []))
        return f"pid {info['pid']} on {info['host']} since {info['started']} ({argv})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"
