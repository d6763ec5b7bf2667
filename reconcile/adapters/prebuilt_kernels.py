"""Kernels on the controller: a prebuilt image resolved to the facts a guest boots with."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from pathlib import Path

from reconcile.adapters.files import read_regular, write_atomic
from reconcile.adapters.initrd import early_module_files
from reconcile.core.desired import Kernel, PrebuiltKernel
from reconcile.core.errors import ReconcileError
from reconcile.core.guests.intent import KernelInputs
from reconcile.core.kernels.kmod import bzimage_release

IMAGE_MAX_BYTES = 256 << 20  # a bzImage is tens of MiB; anything far larger is not one
HEADER_BYTES = 65536  # where the boot header and the release string are
DIGESTS_MAX_BYTES = 1 << 20
# A file changed this recently may change again within the same timestamp tick (the
# kernel's clock for ctime is coarse): its digest is not remembered ("racy git").
SETTLED_NS = 2_000_000_000


def _identity(st: os.stat_result) -> str:
    """What any write to the file changes: ctime cannot be set back by anyone."""
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def _remembered(digests: Path) -> dict[str, dict[str, str]]:
    try:
        data = json.loads(read_regular(digests, DIGESTS_MAX_BYTES))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _header_if_known(image: Path, digests: Path) -> tuple[bytes, str] | None:
    """The image's header and sha256, if `digests` holds it for the file exactly as it is."""
    entry = _remembered(digests).get(str(image))
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
        return None
    fd = os.open(image, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or entry.get("stat") != _identity(st):
            return None
        header = os.pread(fd, HEADER_BYTES, 0)
        if _identity(os.fstat(fd)) != entry["stat"]:
            return None
    finally:
        os.close(fd)
    return header, entry["sha256"]


def _remember(image: Path, before: os.stat_result, digest: str, digests: Path) -> None:
    """Keep the digest by the file's identity; only if nothing changed while it was read."""
    try:
        after = os.stat(image)
        if _identity(after) != _identity(before):
            return
        if time.time_ns() - after.st_ctime_ns < SETTLED_NS:
            return
        known = _remembered(digests)
        known[str(image)] = {"stat": _identity(after), "sha256": digest}
        write_atomic(digests, json.dumps(known, sort_keys=True))
    except (OSError, ReconcileError):
        return  # a cache that cannot be written only costs a hash next time


def _image(image: Path, digests: Path | None) -> tuple[bytes, str]:
    """The image's first bytes and its sha256, from `digests` when the file is unchanged."""
    if digests is not None and (known := _header_if_known(image, digests)) is not None:
        return known
    before = os.stat(image)
    data = read_regular(image, IMAGE_MAX_BYTES)
    digest = hashlib.sha256(data).hexdigest()
    if digests is not None:
        _remember(image, before, digest, digests)
    return data[:HEADER_BYTES], digest


def resolve_prebuilt(kernel: Kernel, digests: Path | None = None) -> KernelInputs:
    """The kernel's facts; `digests` (a file in the lab's state directory) keeps the image's
    sha256 by its stat (device, inode, size, mtime, ctime), so an unchanged image is not
    read again (~25 ms for 8 MB)."""
    source = kernel.source
    assert isinstance(source, PrebuiltKernel)
    try:
        image = source.image.resolve(strict=True)
        header, digest = _image(image, digests)
    except OSError as exc:
        raise ReconcileError(
            f"kernel '{kernel.name}': cannot read image {source.image}: {exc.strerror}",
            hint=f"check kernels.{kernel.name}.image in the manifest: ls -l {source.image}",
        ) from None
    release = bzimage_release(header)
    if release is None:
        raise ReconcileError(
            f"kernel '{kernel.name}': {image} is not a bzImage (no x86 boot header)",
            hint="`image` must be a kernel image such as /boot/vmlinuz-<release>",
        )
    modules = source.modules or Path("/lib/modules") / release
    if not modules.is_dir():
        raise ReconcileError(
            f"kernel '{kernel.name}': modules directory {modules} does not exist",
            hint=f"set kernels.{kernel.name}.modules to the directory of release {release}",
        )
    if modules.resolve().name != release:
        raise ReconcileError(
            f"kernel '{kernel.name}': modules directory {modules} is not named {release}",
            hint="guests mount its parent at /lib/modules and look for /lib/modules/<release>",
        )
    return KernelInputs(
        name=kernel.name,
        image=image,
        digest=digest,
        release=release,
        modules=modules.resolve(),
        early_modules=early_module_files(modules, source.initrd_modules),
    )
