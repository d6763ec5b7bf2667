"""Early-module initrds: a newc cpio of the modules a kernel needs before the store mounts.

Linux unpacks concatenated cpio archives in order, so the guest's initrd is this archive
followed by the system's own initrd, holding `/early/order` and the module files. The demo
flake's initrd loads them first (see nix/README.md). Content-addressed, so an unchanged
input reuses the file.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from reconcile.core.errors import ReconcileError
from reconcile.core.kmod import load_order, module_name

FORMAT = "early-first/1"  # part of the file's key: a new layout never reuses an old file


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
    system_initrd: Path, modules_dir: Path, files: tuple[str, ...], target: Path
) -> Path:
    """The guest's initrd at `target`: early modules, then the system's own initrd.

    `target` is a stable per-guest path, so the domain definition does not change when only
    the file's content must be rewritten (after a wiped state directory, say); a key file
    beside it says what the content was made from. Without early modules it is the
    system's initrd itself.
    """
    if not files:
        return system_initrd
    key = hashlib.sha256(
        "\0".join([FORMAT, str(system_initrd), str(modules_dir), *files]).encode()
    ).hexdigest()
    key_file = target.with_name(target.name + ".key")
    if target.exists() and key_file.exists() and key_file.read_text() == key:
        return target
    entries: list[tuple[str, bytes, int]] = [("early", b"", 0o040755)]
    names = []
    for rel in files:
        name = module_name(rel) + ".ko"
        names.append(name)
        entries.append((f"early/{name}", (modules_dir / rel).read_bytes(), 0o100644))
    entries.append(("early/order", ("\n".join(names) + "\n").encode(), 0o100644))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    # Uncompressed first, like early microcode: the kernel did not find an archive that
    # followed the gzip-compressed one here.
    tmp.write_bytes(cpio(entries) + system_initrd.read_bytes())
    tmp.chmod(0o644)  # QEMU runs as libvirt-qemu and reads it itself
    tmp.replace(target)
    key_file.write_text(key)
    return target
