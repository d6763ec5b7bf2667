"""Early-module initrds: a newc cpio of the modules a kernel needs before the store mounts.

Linux unpacks concatenated cpio archives in order, so the guest's initrd is this archive
followed by the system's own initrd, holding `/early/order` and the module files. The demo
flake's initrd loads them first (see nix/README.md). Content-addressed, so an unchanged
input reuses the file, and verified: the sha256 of what was written is kept beside it
(`<key>.img.sha256`) and checked on each reuse, so a damaged file (a full disk, a stray
write) is made anew instead of booted into a panic.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from reconcile.adapters.files import read_regular
from reconcile.core.errors import ReconcileError
from reconcile.core.kernels.kmod import ModulePathError, load_order, module_name
from reconcile.logs import get_logger

MODULES_DEP_MAX_BYTES = 16 << 20  # a distribution kernel's is about 1 MiB
MODULE_MAX_BYTES = 64 << 20
FORMAT = "early-first/1"  # part of the file's key: a new layout never reuses an old file
DIGEST_SUFFIX = ".sha256"

log = get_logger(__name__)


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
        text = read_regular(dep_file, MODULES_DEP_MAX_BYTES).decode(errors="replace")
    except OSError as exc:
        raise ReconcileError(
            f"cannot read {dep_file}: {exc.strerror}",
            hint="`modules` must be a kernel's modules directory (with modules.dep)",
        ) from None
    try:
        files = tuple(load_order(text, wanted))
    except KeyError as exc:
        raise ReconcileError(
            f"module {exc.args[0]} is not in {dep_file}",
            hint="is it built in (=y)? then drop it from initrd_modules",
        ) from None
    except ModulePathError as exc:
        raise ReconcileError(f"{dep_file}: {exc}", hint=_ESCAPE_HINT) from None
    for rel in files:
        module_file(modules_dir, rel)
    return files


_ESCAPE_HINT = (
    "modules.dep must list paths inside its own directory: is this a kernel's modules "
    "directory (regenerate it with depmod)?"
)


def module_file(modules_dir: Path, rel: str) -> Path:
    """The module file `rel` of modules.dep, refused when it (or a symlink on the way)
    leads out of `modules_dir`."""
    root = modules_dir.resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root) or path == root:
        raise ReconcileError(
            f"{modules_dir / 'modules.dep'}: module path {rel!r} leads to {path}, outside {root}",
            hint=_ESCAPE_HINT,
        )
    return path


def initrd_key(toplevel: str, modules_dir: Path, files: tuple[str, ...]) -> str:
    """What a guest initrd is made from: the system (which fixes its own initrd) and modules."""
    return hashlib.sha256(
        "\0".join([FORMAT, toplevel, str(modules_dir), *files]).encode()
    ).hexdigest()[:32]


def initrd_path(out_dir: Path, toplevel: str, modules_dir: Path, files: tuple[str, ...]) -> Path:
    """Where the guest initrd of these inputs is kept (with early modules: else the
    system's own initrd is booted as it is)."""
    return out_dir / f"{initrd_key(toplevel, modules_dir, files)}.img"


def early_archive(modules_dir: Path, files: tuple[str, ...]) -> bytes:
    """The early modules' archive, which goes before the system's initrd: uncompressed
    first, like early microcode (the kernel did not find an archive that followed the
    gzip-compressed one)."""
    entries: list[tuple[str, bytes, int]] = [("early", b"", 0o040755)]
    names = []
    for rel in files:
        name = module_name(rel) + ".ko"
        names.append(name)
        data = read_regular(module_file(modules_dir, rel), MODULE_MAX_BYTES)
        entries.append((f"early/{name}", data, 0o100644))
    entries.append(("early/order", ("\n".join(names) + "\n").encode(), 0o100644))
    return cpio(entries)


def guest_initrd(
    system_initrd: Path, toplevel: str, modules_dir: Path, files: tuple[str, ...], out_dir: Path
) -> Path:
    """The guest's initrd: early modules, then the system's own initrd.

    Content-addressed in `out_dir` and shared by every guest of the same system and kernel;
    the name depends only on inputs known before building, so a wiped state directory is
    rebuilt at the same path the domain was defined with. Without early modules it is the
    system's initrd itself.
    """
    if not files:
        return system_initrd
    target = initrd_path(out_dir, toplevel, modules_dir, files)
    digest_file = target.with_name(target.name + DIGEST_SUFFIX)
    if target.exists():
        if _intact(target, digest_file):
            return target
        log.warning("cached initrd damaged or unverified: making it anew", path=str(target))
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    data = early_archive(modules_dir, files) + system_initrd.read_bytes()
    tmp.write_bytes(data)
    tmp.chmod(0o644)  # QEMU runs as libvirt-qemu and reads it itself
    tmp.replace(target)
    # Written after the file: a kill in between leaves a file without its digest, which
    # the next use makes anew.
    digest_tmp = tmp.with_name(tmp.name + DIGEST_SUFFIX)
    digest_tmp.write_text(hashlib.sha256(data).hexdigest() + "\n")
    digest_tmp.replace(digest_file)
    return target


def _intact(target: Path, digest_file: Path) -> bool:
    """Whether the cached file is what was written (its digest, kept beside it, matches)."""
    try:
        want = digest_file.read_text().strip()
        digest = hashlib.sha256()
        with target.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return False
    return digest.hexdigest() == want
