"""Early-module initrds: a newc cpio of the modules a kernel needs before the store mounts.

Linux unpacks concatenated cpio archives in order, so the guest's initrd is the system's
own initrd followed by this archive, holding `/early/order` and the module files. The demo
flake's initrd loads them first (see nix/README.md). Content-addressed, so an unchanged
input reuses the file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from reconcile.core.errors import ReconcileError
from reconcile.core.kmod import load_order, module_name


def _entry(name: str, data: bytes, mode: int, ino: int) -> bytes:
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0]
    header = b"070701" + b"".join(f"{v:08x}".encode() for v in fields)
    body = header + name.encode() + b"\0"
    body += b"\0" * (-len(body) % 4)
    body += data + b"\0" * (-len(data) % 4)
    return body


def cpio(files: list[tuple[str, bytes, int]]) -> bytes:
    """A newc archive of (name, data, mode) entries, with its trailer."""
    out = b"".join(_entry(n, d, m, i + 1) for i, (n, d, m) in enumerate(files))
    return out + _entry("TRAILER!!!", b"", 0, 0)


def early_module_files(modules_dir: Path, wanted: tuple[str, ...]) -> tuple[str, ...]:
    """The module files to load for `wanted`, dependencies first, from modules.dep."""
    if not wanted:
        return ()
    dep_file = modules_dir / "modules.dep"
    try:
        text = dep_file.read_text()
    except OSError as exc:
        raise ReconcileError(
            f"cannot read {dep_file}: {exc.strerror}",
            hint="`modules` must be a kernel's modules directory (with modules.dep)",
        ) from None
    try:
        return tuple(load_order(text, wanted))
    except KeyError as exc:
        raise ReconcileError(
            f"module {exc.args[0]} is not in {dep_file}",
            hint="is it built in (=y)? then drop it from initrd_modules",
        ) from None


def guest_initrd(
    system_initrd: Path, modules_dir: Path, files: tuple[str, ...], out_dir: Path
) -> Path:
    """The system's initrd with the early modules appended; the system's own if none."""
    if not files:
        return system_initrd
    key = hashlib.sha256(
        "\0".join([str(system_initrd), str(modules_dir), *files]).encode()
    ).hexdigest()[:32]
    target = out_dir / f"{key}.img"
    if target.exists():
        return target
    entries: list[tuple[str, bytes, int]] = [("early", b"", 0o040755)]
    names = []
    for rel in files:
        name = module_name(rel) + ".ko"
        names.append(name)
        entries.append((f"early/{name}", (modules_dir / rel).read_bytes(), 0o100644))
    entries.append(("early/order", ("\n".join(names) + "\n").encode(), 0o100644))
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{key}.{os.getpid()}.tmp"
    tmp.write_bytes(system_initrd.read_bytes() + cpio(entries))
    tmp.replace(target)
    return target
