"""Kernel facts read from bytes: a bzImage's release string, module load order."""

from __future__ import annotations

from pathlib import PurePosixPath

# The x86 boot protocol: the setup header's `kernel_version` field (offset 0x20E) points,
# relative to 0x200, at a NUL-terminated string that begins with the release.
_HEADER_MAGIC_OFFSET = 0x202
_VERSION_POINTER_OFFSET = 0x20E


def bzimage_release(head: bytes) -> str | None:
    """The release (`6.1.0-56-amd64`) of a bzImage from its first 64 KiB, or None."""
    if head[_HEADER_MAGIC_OFFSET : _HEADER_MAGIC_OFFSET + 4] != b"HdrS":
        return None
    pointer = int.from_bytes(head[_VERSION_POINTER_OFFSET : _VERSION_POINTER_OFFSET + 2], "little")
    start = pointer + 0x200
    end = head.find(b"\0", start, start + 256)
    if pointer == 0 or end < 0:
        return None
    text = head[start:end].decode("ascii", "replace").split(" ", 1)[0]
    return text or None


def module_name(path: str) -> str:
    """`kernel/fs/fuse/virtiofs.ko` -> `virtiofs` (dashes and underscores are one to kmod)."""
    # a plain split (modules.dep has ~4000 lines: PurePosixPath per line cost ~10 ms of
    # every plan); PurePosixPath only where it would normalise something away
    if path.endswith("/") or "/." in path or path.startswith("."):
        name = PurePosixPath(path).name
    else:
        name = path.rsplit("/", 1)[-1]
    if name.endswith((".xz", ".zst", ".gz")):  # compressed modules (most are not)
        for suffix in (".xz", ".zst", ".gz"):
            name = name.removesuffix(suffix)
    return name.removesuffix(".ko").replace("-", "_")


class ModulePathError(ValueError):
    """A module path in modules.dep that would leave the modules directory."""


def check_module_path(path: str) -> str:
    """`path` if it is a relative path below the modules directory; else ModulePathError.

    Symlinks are the adapter's to check (this is text only).
    """
    parts = PurePosixPath(path).parts
    if not path or path.startswith("/") or ".." in parts or "\0" in path or not parts:
        raise ModulePathError(f"module path {path!r} leaves the modules directory")
    return path


def load_order(modules_dep: str, wanted: tuple[str, ...]) -> list[str]:
    """Module files (relative to the modules dir) to insmod, dependencies first.

    `modules_dep` is the text of `modules.dep`: `path: dep-path dep-path ...`, where each
    line's dependencies are listed so that loading them right to left works.
    Raises KeyError naming a module that is not in the file, and ModulePathError for a
    path (of a wanted module or a dependency) that is absolute or climbs out with `..`.
    """
    deps: dict[str, tuple[str, str]] = {}
    for line in modules_dep.splitlines():
        path, sep, rest = line.partition(":")
        if sep:
            deps[module_name(path)] = (path, rest)  # split when visited: most never are
    order: list[str] = []

    def visit(name: str) -> None:
        path, needs = deps[name]
        path = path.strip()
        check_module_path(path)
        if path in order:
            return
        for dep in reversed(needs.split()):
            visit(module_name(dep))
        if path not in order:
            order.append(path)

    for name in wanted:
        visit(name.replace("-", "_"))
    return order
