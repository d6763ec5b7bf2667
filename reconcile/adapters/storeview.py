"""A read-only view of /nix/store for guests: a bind mount remounted read-only.

libvirt 9.0 refuses `<readonly/>` on virtiofs and QEMU 7.2's virtiofsd has no read-only
option, so the share's source is this view instead of /nix/store itself: a guest that
mounts its store read-write still cannot write (EROFS from the host's kernel). A bind
mount shows store paths built after it was made.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from reconcile.adapters import process
from reconcile.core.errors import ReconcileError

STORE = Path("/nix/store")


def _mount_points() -> set[str]:
    # os.path.ismount compares devices, which a bind mount from the same file system shares.
    with open("/proc/self/mounts") as mounts:
        return {
            line.split()[1].encode().decode("unicode_escape") for line in mounts if line.strip()
        }


def _mounted(path: Path) -> bool:
    return str(path.resolve()) in _mount_points()


def is_readonly_view(path: Path) -> bool:
    return _mounted(path) and bool(os.statvfs(path).f_flag & os.ST_RDONLY)


# Guests start in parallel threads: two binds stacked on one path would leave the lower
# one writable. Processes are serialized by the lab's lock.
_LOCK = threading.Lock()


def ensure_readonly_view(path: Path, store: Path = STORE) -> None:
    """Make `path` a read-only bind of the store; nothing when it already is one.

    A writable bind of the store is the one thing this must never leave behind (a
    `rm -r` of the state directory would go through it), so a bind that cannot be made
    read-only is unmounted again before the error is raised.
    """
    with _LOCK:
        if is_readonly_view(path):
            return
        path.mkdir(parents=True, exist_ok=True)
        hint = "reconcile needs root on the hypervisor host to mount the store read-only"
        if not _mounted(path):
            process.run(["mount", "--bind", str(store), str(path)], hint=hint)
        try:
            process.run(["mount", "-o", "remount,bind,ro", str(path)], hint=hint)
        finally:
            if not is_readonly_view(path):
                process.run(["umount", str(path)], check=False)
        if not is_readonly_view(path):
            raise ReconcileError(f"{path} stayed writable; unmounted it", hint=hint)
