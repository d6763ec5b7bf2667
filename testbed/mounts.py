"""Mounts below a directory, and removing a directory only once nothing is mounted below it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def mounts_below(root: Path) -> list[str]:
    prefix = str(root.resolve())
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1].encode().decode("unicode_escape") for line in mounts]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


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
