"""Bringing up the real stack for `real` tests; no systemd here, so daemons start by hand."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

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


def mounts_below(root: Path) -> list[str]:
    prefix = str(root.resolve())
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1].encode().decode("unicode_escape") for line in mounts]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


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


def remove_tree(root: Path) -> None:
    """rmtree, but only once nothing is mounted below `root`.

    A lab's state directory holds a bind mount of /nix/store: removing through it would
    remove the store. Unmount every layer first, and refuse if any is left.
    """
    for _ in range(20):
        points = mounts_below(root)
        if not points:
            break
        for point in sorted(points, key=len, reverse=True):
            subprocess.run(["umount", point], capture_output=True, check=False)
    left = mounts_below(root)
    if left:
        raise RuntimeError(f"refusing to remove {root}: still mounted below it: {left}")
    shutil.rmtree(root, ignore_errors=True)
