"""Bringing up the real stack for `real` tests; no systemd here, so daemons start by hand.

`mounts_below` and `remove_tree` are defined in `testbed.mounts` (bench/ needs them too).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from testbed.mounts import mounts_below, remove_tree

__all__ = [
    "SYSTEM_URI",
    "ensure_libvirtd",
    "mounts_below",
    "remove_tree",
    "writable_mounts_below",
]

SYSTEM_URI = "qemu:///system"


def _answers(uri: str) -> bool:
    virsh = shutil.which("virsh")
    if virsh is None:
        raise RuntimeError("virsh not found: run scripts/setup.sh (libvirt-clients)")
    proc = subprocess.run(
        [virsh, "-c", uri, "list", "--all"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return proc.returncode == 0


def _running(program: str) -> bool:
    found = subprocess.run(["pgrep", "-x", program], capture_output=True, check=False)
    return found.returncode == 0


def ensure_libvirtd(uri: str = SYSTEM_URI, timeout_s: float = 15.0) -> None:
    """Make `virsh -c uri list` answer, starting virtlogd and libvirtd (`-d`) when needed.

    virtlogd first: QEMU domains cannot start without it. Raises RuntimeError when the
    daemon does not answer within `timeout_s`: a real test must fail, not skip.
    """
    if _answers(uri):
        return
    for daemon in ("virtlogd", "libvirtd"):
        if not _running(daemon):
            subprocess.run([daemon, "-d"], check=True, capture_output=True, timeout=30)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _answers(uri):
            return
        time.sleep(0.2)
    raise RuntimeError(f"libvirtd does not answer on {uri} after {timeout_s:g}s")


def writable_mounts_below(root: Path) -> list[str]:
    """Mount points at or below `root` whose mount is writable (its own flag, from mountinfo)."""
    prefix = str(root.resolve())
    found = []
    with open("/proc/self/mountinfo", "rb") as info:
        for line in info:
            fields = line.split(b" ")
            point = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), fields[4])
            path = os.fsdecode(point)
            under = path == prefix or path.startswith(prefix + "/")
            if under and b"ro" not in fields[5].split(b","):
                found.append(path)
    return found
