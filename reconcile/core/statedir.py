"""Where a lab's state directory may be, and how reconcile knows one is its own.

Pure: the rules only. A state directory holds the lab's lock, history, GC roots, kernel
builds and caches, and `rm -r` of it is how a lab is thrown away: so it must never be the
root, the Nix store or a system directory, and reconcile writes into one only when it is
its own (it carries the lab's mark, or reconcile makes it).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePath

from reconcile.core.layout import StateLayout

# Nothing at or below these: the store, kernel interfaces, the system itself.
FORBIDDEN_TREES = frozenset(
    {"/nix", "/proc", "/sys", "/dev", "/etc", "/usr", "/boot", "/bin", "/sbin"}
    | {"/lib", "/lib32", "/lib64", "/libx32"}
)
# These themselves are shared by everything; a directory below them is fine.
FORBIDDEN_EXACT = frozenset(
    {"/", "/home", "/root", "/run", "/tmp", "/var", "/srv", "/opt", "/mnt", "/media"}  # noqa: S108
    | {"/var/lib", "/var/cache", "/var/log", "/var/tmp", "/run/user"}  # noqa: S108
)
# Files only reconcile makes: a directory without the mark that holds one of these was made
# by an older reconcile, before the mark existed. (A layout of "." names the entries.)
SIGNATURES = frozenset(path.name for path in StateLayout(Path()).signatures)


def location_problem(path: PurePath | str) -> str | None:
    """Why `path` (absolute) cannot be a state directory, or None. Lexical: the adapter
    checks the resolved path again before it writes."""
    normal = os.path.normpath(str(path))
    if not normal.startswith("/"):
        return f"{path} is not an absolute path"
    for tree in sorted(FORBIDDEN_TREES):
        if normal == tree or normal.startswith(tree + "/"):
            return f"{normal} is in {tree}, which reconcile never writes into"
    if normal in FORBIDDEN_EXACT:
        return f"{normal} is a shared system directory, not a directory of the lab's own"
    return None


def made_by_reconcile(names: set[str]) -> bool:
    """Whether a directory without the mark, holding `names`, is an older reconcile's."""
    return bool(names & SIGNATURES)
