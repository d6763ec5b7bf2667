"""Read-only views on the host: what every read-only virtiofs share is served from.

libvirt 9.0 refuses `<readonly/>` on virtiofs and QEMU 7.2's virtiofsd has no read-only
option, so a read-only share's source is a bind of its directory that is read-only on the
host: a guest that mounts its tag read-write still gets EROFS. A bind mount shows files
made in its source after it was made (store paths built later).

The bind is made with the new mount API: `open_tree` clones the source as a detached
mount, `mount_setattr` makes it read-only while it is still detached, `move_mount`
attaches it. So it is read-only from the moment it appears, and a kill before the move
leaves nothing (a detached mount dies with its file descriptor). A writable mount found
at a view's path (an older version killed between its bind and its remount) is unmounted,
never used: a `rm -r` of the state directory would go through it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from reconcile.adapters.lock import flock_within
from reconcile.core.errors import ReconcileError
from reconcile.core.guests.observed import ViewState
from reconcile.core.guests.shares import View

# x86_64 syscall numbers and flags (linux/mount.h, linux/fcntl.h)
SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429
SYS_MOUNT_SETATTR = 442
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY = 0x1
MS_PRIVATE = 1 << 18
MNT_DETACH = 0x2
UMOUNT_NOFOLLOW = 0x8

HINT = (
    "read-only views need root on the hypervisor host and Linux 5.12 or later "
    "(open_tree, mount_setattr, move_mount)"
)
LOCK_TIMEOUT_S = 60.0
MOUNTINFO = Path("/proc/self/mountinfo")


class _MountAttr(ctypes.Structure):
    _fields_ = (
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    )


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_umount2 = _libc.umount2
_umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_umount2.restype = ctypes.c_int


# -- observing (read-only: /proc/self/mountinfo and stat) -------------------------------


@dataclass(frozen=True)
class Mount:
    point: str
    readonly: bool  # the mount's own flag (not the file system's)


def parse_mountinfo(text: bytes) -> list[Mount]:
    """Each mount of a mountinfo table, in mount order (a later one is on top)."""
    mounts = []
    for line in text.splitlines():
        fields = line.split(b" ")
        if len(fields) < 6:
            continue
        point = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), fields[4])
        mounts.append(Mount(os.fsdecode(point), b"ro" in fields[5].split(b",")))
    return mounts


def below(mounts: Iterable[Mount], path: str) -> list[Mount]:
    """The mounts at or below `path`, in mount order."""
    return [m for m in mounts if m.point == path or m.point.startswith(path.rstrip("/") + "/")]


def classify(mounts: Iterable[Mount], path: str, shows_source: bool) -> ViewState:
    """A view's state from the mounts at or below `path` and whether it shows its source."""
    at = below(mounts, path)
    if any(not m.readonly for m in at):
        return ViewState.WRITABLE
    layers = [m for m in at if m.point == path]
    if not layers:
        return ViewState.STALE if at else ViewState.MISSING
    if len(at) > 1 or not shows_source:
        return ViewState.STALE
    return ViewState.READ_ONLY


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _state(view: View, mounts: list[Mount]) -> ViewState:
    shown = _identity(view.path)
    shows_source = shown is not None and shown == _identity(view.source)
    return classify(mounts, os.path.realpath(view.path), shows_source)


def _mounts() -> list[Mount]:
    return parse_mountinfo(MOUNTINFO.read_bytes())


def observe(views: Iterable[View]) -> dict[View, ViewState]:
    """Each view's state; reads /proc/self/mountinfo once and stats, changes nothing."""
    mounts = _mounts()
    return {view: _state(view, mounts) for view in views}


# -- making ---------------------------------------------------------------------------


def _fail(view: View, what: str, errno: int) -> ReconcileError:
    return ReconcileError(
        f"cannot make the read-only view {view.path} of {view.source}: {what}: "
        f"{os.strerror(errno)}",
        hint=HINT,
    )


def _attach_readonly(view: View) -> None:
    """The bind, read-only before it is attached: there is never a writable one."""
    fd = _syscall(
        ctypes.c_long(SYS_OPEN_TREE),
        ctypes.c_int(AT_FDCWD),
        os.fsencode(view.source),
        ctypes.c_uint(OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC),
    )
    if fd < 0:
        raise _fail(view, "open_tree", ctypes.get_errno())
    try:
        # private: mounts later made in the source's peer group do not appear in the view
        attr = _MountAttr(attr_set=MOUNT_ATTR_RDONLY, propagation=MS_PRIVATE)
        if (
            _syscall(
                ctypes.c_long(SYS_MOUNT_SETATTR),
                ctypes.c_int(fd),
                b"",
                ctypes.c_uint(AT_EMPTY_PATH),
                ctypes.byref(attr),
                ctypes.c_size_t(ctypes.sizeof(attr)),
            )
            < 0
        ):
            raise _fail(view, "mount_setattr (read-only)", ctypes.get_errno())
        if (
            _syscall(
                ctypes.c_long(SYS_MOVE_MOUNT),
                ctypes.c_int(fd),
                b"",
                ctypes.c_int(AT_FDCWD),
                os.fsencode(view.path),
                ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH),
            )
            < 0
        ):
            raise _fail(view, "move_mount", ctypes.get_errno())
    finally:
        os.close(fd)


def unmount(path: Path) -> None:
    """Detach every mount at and below `path`, top first (nothing when there is none)."""
    target = os.path.realpath(path)
    for _ in range(256):
        mounts = below(_mounts(), target)
        if not mounts:
            return
        point = mounts[-1].point
        if _umount2(os.fsencode(point), MNT_DETACH | UMOUNT_NOFOLLOW) < 0:
            errno = ctypes.get_errno()
            raise ReconcileError(f"cannot unmount {point}: {os.strerror(errno)}", hint=HINT)
    raise ReconcileError(f"cannot unmount {target}: mounts keep appearing there", hint=HINT)


# Guests start in parallel threads and plan/drift take no lab lock: one view is made by
# one thread of one process at a time, or two binds would stack.
_LOCK = threading.Lock()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with _LOCK:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            if not flock_within(fd, LOCK_TIMEOUT_S):
                raise ReconcileError(
                    f"{path} stayed locked for {LOCK_TIMEOUT_S:g}s",
                    hint="another reconcile is making read-only views; try again",
                )
            yield
        finally:
            os.close(fd)


def _check_source(view: View) -> None:
    try:
        is_dir = view.source.is_dir()
    except OSError:
        is_dir = False
    if not is_dir:
        what = "is not a directory" if view.source.exists() else "does not exist"
        raise ReconcileError(
            f"the read-only share source {view.source} {what}",
            hint="a share's source must be a directory on the hypervisor host",
        )


def ensure(lock: Path, views: Iterable[View]) -> None:
    """Make each view a read-only bind of its source; nothing for those that already are.

    Under `lock` (`StateLayout.views_lock`). A writable or stale mount at a view's path is
    unmounted first, never used.
    """
    with _locked(lock):
        for view in views:
            _check_source(view)
            mounts = _mounts()
            if _state(view, mounts) is ViewState.READ_ONLY:
                continue
            unmount(view.path)
            view.path.mkdir(parents=True, exist_ok=True)
            try:
                _attach_readonly(view)
            finally:
                state = _state(view, _mounts())
                if state is not ViewState.READ_ONLY:
                    unmount(view.path)
            if state is not ViewState.READ_ONLY:
                raise ReconcileError(
                    f"the view {view.path} of {view.source} is {state.value}; unmounted it",
                    hint=HINT,
                )
