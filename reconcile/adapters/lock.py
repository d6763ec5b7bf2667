"""One lock per lab: flock on a file in its state directory, naming its holder.

flock (not lockf) so that the lock belongs to the open file and dies with the process, a
SIGKILLed apply included. The file's content says who holds it, for the error message.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sys
import time
from dataclasses import dataclass
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
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise _unwritable(self.path, exc) from None
        if not flock_within(fd, self.timeout_s):
            holder = _read_holder(self.path)
            os.close(fd)
            raise LockError(
                f"the lab is locked by {holder}",
                hint="wait for that run to finish, or pass --lock-timeout DURATION",
            )
        import socket  # noqa: PLC0415 - only to take the lock (a plan only reads it)

        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "argv": sys.argv,
        }
        try:
            os.ftruncate(fd, 0)
            data = json.dumps(info).encode()
            if os.write(fd, data) != len(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as exc:
            os.close(fd)  # releases the flock
            raise _unwritable(self.path, exc) from None
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


@dataclass(frozen=True)
class Holder:
    """Who holds a lab's lock now, and for how long."""

    pid: int
    host: str
    started: str  # as written, ISO 8601 UTC
    argv: str
    age_s: float

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} since {self.started} ({self.argv})"


def holder(path: Path, now: float | None = None) -> Holder | None:
    """The lock's holder, read without taking the lock (a drift timer must never make an
    apply fail); None when nobody holds it.

    Held means a flock on the file's inode is listed in /proc/locks; its content names who.
    """
    try:
        st = path.stat()
        if st.st_size == 0:
            # Released (a holder empties it first), or taken this instant and not yet
            # named: either way not held for any time that matters. /proc/locks is not
            # read then: the kernel takes a lock for it that waits for an RCU grace period
            # (5-15 ms of a plan's time on this project's machines).
            return None
        locks = Path("/proc/locks").read_text()
    except OSError:
        return None
    inode = f":{st.st_ino} "
    held = any(
        line.split()[1:2] == ["FLOCK"] and inode in line and _same_device(line, st.st_dev)
        for line in locks.splitlines()
    )
    if not held:
        return None
    try:
        info = json.loads(path.read_text())
        started = str(info["started"])
        import calendar  # noqa: PLC0415 - only for a lock that is held

        begun = calendar.timegm(time.strptime(started, "%Y-%m-%dT%H:%M:%SZ"))
        return Holder(
            pid=int(info["pid"]),
            host=str(info["host"]),
            started=started,
            argv=" ".join(str(a) for a in info.get("argv", [])),
            age_s=max(0.0, (time.time() if now is None else now) - begun),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _same_device(line: str, dev: int) -> bool:
    # /proc/locks spells the device MAJOR:MINOR in hex, then the inode: `fd:01:1234`.
    fields = line.split()
    where = next((f for f in fields if f.count(":") == 2), "")
    major, minor, _ = where.split(":") if where else ("", "", "")
    try:
        return (int(major, 16), int(minor, 16)) == (os.major(dev), os.minor(dev))
    except ValueError:
        return False


def _unwritable(path: Path, exc: OSError) -> LockError:
    """A lock that cannot be made or written (read-only or full file system, permissions)."""
    why = exc.strerror or str(exc)
    return LockError(
        f"cannot take the lab's lock {path}: {why}",
        hint=f"the state directory {path.parent} must be writable: is its file system "
        "read-only or full (`df`, `findmnt -T`), or owned by another user?",
    )


def _read_holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        argv = " ".join(info.get("argv", []))
        return f"pid {info['pid']} on {info['host']} since {info['started']} ({argv})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def lock_state(path: Path, warn_after_s: float) -> tuple[str | None, float]:
    """A warning when the lock at `path` has been held past `warn_after_s`, and for how
    long it has been held (0 when free). Read without taking the lock."""
    found = holder(path)
    if found is None:
        return None, 0.0
    from reconcile.core.lockage import held_too_long  # noqa: PLC0415 - only for a held lock

    return held_too_long(found.describe(), found.age_s, warn_after_s), found.age_s
