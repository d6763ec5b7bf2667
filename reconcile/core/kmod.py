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
    name = PurePosixPath(path).name
    for suffix in (".xz", ".zst", ".gz"):
        name = name.removesuffix(suffix)
    return name.removesuffix(".ko").replace("-", "_")


def load_order(modules_dep: str, wanted: tuple[str, ...]) -> list[str]:
    """Module files (relative to the modules dir) to insmod, dependencies first.

    `modules_dep` is the text of `modules.dep`: `path: dep-path dep-path ...`, where each
    line's dependencies are listed so that loading them right to left works.
    Raises KeyError naming a module that is not in the file.
    """
    deps: dict[str, tuple[str, list[str]]] = {}
    for line in modules_dep.splitlines():
        path, sep, rest = line.partition(":")
        if sep:
            deps[module_name(path)] = (path, rest.split())
    order: list[str] = []

    def visit(name: str) -> None:
        path, needs = deps[name]
        if path in order:
            return
        for dep in reversed(needs):
            visit(module_name(dep))
        if path not in order:
            order.append(path)

    for name in wanted:
        visit(name.replace("-", "_"))
    return order
