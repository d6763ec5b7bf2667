"""What a guest may be given: kernel parameters, share sources, a prebuilt kernel's modules.

Pure and lexical, on paths as the manifest resolves them (`os.path.normpath`, so `..` cannot
step around a rule); the adapters meet symlinks when they mount. The state directory's own
rules are in core/statedir.py.
"""

from __future__ import annotations

import os
import re
from pathlib import PurePath

# What the imageless boot puts on the command line (core/guests/intent.py `kernel_cmdline`) or
# depends on. The kernel and stage 1 take the *last* `root=`/`init=`, so a guest's
# `kernel_params`, which come after, would win: `init=/bin/sh` boots something else,
# `rdinit=` skips stage 1 (no store), `initrd=`/`noinitrd` drop the early modules and
# stage 1, and `8250.nr_uarts=0` removes ttyS0, where the readiness line is read.
# `console=` stays allowed: stage 2 writes the readiness line to ttyS0 whichever console
# is last (nix/stage-2-init.sh), and kconfig checks the drivers each console needs.
_SET = "reconcile sets it for the imageless boot"
_INITRD = "reconcile gives the initrd (stage 1 and early modules)"
OWNED_PARAMS = {
    "root=": _SET,
    "rootfstype=": _SET,
    "rootflags=": _SET,
    "init=": _SET,
    "rdinit=": "it runs another program than stage 1, which mounts the store",
    "initrd=": _INITRD,
    "noinitrd": _INITRD,
    "8250.nr_uarts=": "it removes ttyS0, where reconcile reads the readiness line",
    "8250_core.nr_uarts=": "it removes ttyS0, where reconcile reads the readiness line",
}
# Nothing at or below these is handed to a guest: the whole store (it is shared read-only
# as `store` already; below /nix lies Nix's database too), kernel interfaces, the system's
# configuration and boot files.
FORBIDDEN_SHARE_TREES = ("/nix", "/proc", "/sys", "/dev", "/etc", "/boot")
_RELEASE = re.compile(r"[0-9]+\.[0-9]+[A-Za-z0-9._+~-]*")  # 6.1.0-18-amd64, 6.8.0-rc1+


def _name(param: str) -> str:
    # The kernel compares parameter names with `-` and `_` alike (parameq).
    name, eq, value = param.partition("=")
    return name.replace("-", "_") + eq + value


def param_problem(param: str) -> str | None:
    """Why an imageless guest's kernel parameter is refused, or None."""
    normal = _name(param)
    for owned, why in OWNED_PARAMS.items():
        # the kernel matches a setup name as a prefix: `noinitrdX` is `noinitrd`
        if normal.startswith(_name(owned)):
            return f"`{owned.rstrip('=')}` cannot be set here: {why}"
    return None


def _within(path: str, tree: str) -> bool:
    return path == tree or path.startswith(tree.rstrip("/") + "/")


def share_problem(source: PurePath, state_dir: PurePath) -> str | None:
    """Why a host directory cannot be shared with a guest, or None."""
    normal = os.path.normpath(str(source))
    if not normal.startswith("/"):
        return None  # relative to a relative manifest path: judged where it is resolved
    if normal == "/":
        return "/ is the whole host"
    for tree in FORBIDDEN_SHARE_TREES:
        if _within(normal, tree):
            return f"{normal} is in {tree}, which no guest is given"
    state = os.path.normpath(str(state_dir))
    if _within(normal, state):
        return f"{normal} is in the lab's state directory {state} (its lock, GC roots, views)"
    if _within(state, normal):
        return f"{normal} holds the lab's state directory {state} (its lock, GC roots, views)"
    return None


def modules_problem(modules: PurePath, state_dir: PurePath) -> str | None:
    """Why a prebuilt kernel's `modules` cannot be shared: guests are given its parent
    (mounted at /lib/modules), so it must be a release's directory in a shareable one."""
    normal = PurePath(os.path.normpath(str(modules)))
    if not _RELEASE.fullmatch(normal.name):
        return (
            f"{normal} is not named like a kernel release (e.g. 6.1.0-18-amd64): "
            "guests are given its parent directory"
        )
    problem = share_problem(normal.parent, state_dir)
    return None if problem is None else f"its parent is given to guests, and {problem}"
