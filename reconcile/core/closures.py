"""What a system change is: the packages whose versions change, those added and removed,
and the sizes, as `nix store diff-closures` and nvd show them.

Pure: it is handed each closure as store paths with their NAR sizes (adapters/nix.py
reads them) and computes the difference by package name. A name and its version are split
where Nix splits them: at the first `-` that a letter does not follow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

TOP = 10  # entries shown in text; JSON has them all
_HASH_LEN = 32


def package(path: str) -> tuple[str, str]:
    """(name, version) of a store path: `/nix/store/<hash>-hello-2.12` -> ("hello", "2.12")."""
    base = path.rsplit("/", 1)[-1]
    name = base[_HASH_LEN + 1 :] if len(base) > _HASH_LEN and base[_HASH_LEN] == "-" else base
    for i, char in enumerate(name):
        if char == "-" and i + 1 < len(name) and not name[i + 1].isalpha():
            return name[:i], name[i + 1 :]
    return name, ""


@dataclass(frozen=True)
class PackageChange:
    name: str
    before: tuple[str, ...]  # versions in the old closure ("" for none): empty when added
    after: tuple[str, ...]  # versions in the new one: empty when removed
    size_delta: int  # bytes

    @property
    def kind(self) -> str:
        if not self.before:
            return "added"
        if not self.after:
            return "removed"
        return "changed" if self.before != self.after else "resized"


@dataclass(frozen=True)
class ClosureDiff:
    before: str  # the old system's store path
    after: str
    size_before: int | None  # None: the old closure is not in this machine's store
    size_after: int | None  # None: the new one is not built yet
    to_copy: int | None  # paths of the new closure not in the old one (what a target lacks)
    to_copy_bytes: int | None
    packages: tuple[PackageChange, ...]  # largest size change first

    def counts(self) -> dict[str, int]:
        found = {"changed": 0, "added": 0, "removed": 0, "resized": 0}
        for change in self.packages:
            found[change.kind] += 1
        return found


def diff_closures(
    before: str,
    after: str,
    old: Mapping[str, int] | None,
    new: Mapping[str, int] | None,
) -> ClosureDiff:
    """`old` and `new` map each path of a closure to its NAR size; None when that closure is
    not in this machine's store (the new one before it is built): then the diff says so."""
    if new is None:
        return ClosureDiff(before, after, None, None, None, None, ())
    size_after = sum(new.values())
    if old is None:
        return ClosureDiff(before, after, None, size_after, None, None, ())
    versions: dict[str, tuple[set[str], set[str]]] = {}
    sizes: dict[str, int] = {}
    for paths, side, sign in ((old, 0, -1), (new, 1, 1)):
        for path, size in paths.items():
            name, version = package(path)
            versions.setdefault(name, (set(), set()))[side].add(version)
            sizes[name] = sizes.get(name, 0) + sign * size
    changes = []
    for name, (was, now) in versions.items():
        if was == now and sizes[name] == 0:
            continue
        changes.append(PackageChange(name, tuple(sorted(was)), tuple(sorted(now)), sizes[name]))
    changes.sort(key=lambda c: (-abs(c.size_delta), c.name))
    copy = [p for p in new if p not in old]
    return ClosureDiff(
        before,
        after,
        sum(old.values()),
        size_after,
        len(copy),
        sum(new[p] for p in copy),
        tuple(changes),
    )


# --- rendering ------------------------------------------------------------------------


def human(size: int) -> str:
    """Bytes as a person reads them: `512 B`, `3.1 KiB`, `12.4 MiB`, signed when asked."""
    magnitude = abs(size)
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if magnitude >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _signed(size: int) -> str:
    return ("+" if size >= 0 else "-") + human(abs(size))


def _versions(versions: Iterable[str]) -> str:
    shown = [v or "(no version)" for v in versions]
    return ", ".join(shown) if shown else "-"


def text_lines(diff: ClosureDiff, indent: str = "      ", top: int = TOP) -> list[str]:
    """A summary line, then the top `top` packages by size change."""
    if diff.size_after is None:
        return [f"{indent}closure: not built yet (apply builds it; the diff shows once it is)"]
    if diff.size_before is None:
        return [
            f"{indent}closure: {human(diff.size_after)} "
            "(the old system is not in this machine's store: no diff)"
        ]
    c = diff.counts()
    summary = (
        f"{indent}closure: {c['changed']} changed, {c['added']} added, {c['removed']} removed; "
        f"{human(diff.size_before)} -> {human(diff.size_after)} "
        f"({_signed(diff.size_after - diff.size_before)})"
    )
    if diff.to_copy:
        paths = f"{diff.to_copy} path{'s' if diff.to_copy != 1 else ''}"
        summary += f"; {paths} ({human(diff.to_copy_bytes or 0)}) not in the old one"
    lines = [summary]
    for change in diff.packages[:top]:
        if change.kind == "added":
            what = f"+ {change.name} {_versions(change.after)}"
        elif change.kind == "removed":
            what = f"- {change.name} {_versions(change.before)}"
        elif change.kind == "changed":
            what = f"~ {change.name}: {_versions(change.before)} -> {_versions(change.after)}"
        else:
            what = f"~ {change.name}"
        lines.append(f"{indent}  {what.rstrip()} ({_signed(change.size_delta)})")
    if len(diff.packages) > top:
        lines.append(f"{indent}  ... and {len(diff.packages) - top} more (--json lists all)")
    return lines


def document(diff: ClosureDiff) -> dict[str, Any]:
    return {
        "before": diff.before,
        "after": diff.after,
        "size_before": diff.size_before,
        "size_after": diff.size_after,
        "to_copy": diff.to_copy,
        "to_copy_bytes": diff.to_copy_bytes,
        "counts": diff.counts() if diff.size_before is not None else None,
        "packages": [
            {
                "name": c.name,
                "change": c.kind,
                "before": list(c.before),
                "after": list(c.after),
                "size_delta": c.size_delta,
            }
            for c in diff.packages
        ],
    }
