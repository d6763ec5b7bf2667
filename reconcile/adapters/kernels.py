"""Kernels on the controller: a prebuilt image resolved to the facts a guest boots with."""

from __future__ import annotations

import hashlib
from pathlib import Path

from reconcile.adapters.files import read_regular
from reconcile.adapters.initrd import early_module_files
from reconcile.core.desired import Kernel, PrebuiltKernel
from reconcile.core.errors import ReconcileError
from reconcile.core.intent import KernelInputs
from reconcile.core.kmod import bzimage_release

IMAGE_MAX_BYTES = 256 << 20  # a bzImage is tens of MiB; anything far larger is not one


def resolve_prebuilt(kernel: Kernel) -> KernelInputs:
    source = kernel.source
    assert isinstance(source, PrebuiltKernel)
    try:
        image = source.image.resolve(strict=True)
        data = read_regular(image, IMAGE_MAX_BYTES)
    except OSError as exc:
        raise ReconcileError(
            f"kernel '{kernel.name}': cannot read image {source.image}: {exc.strerror}",
            hint=f"check kernels.{kernel.name}.image in the manifest: ls -l {source.image}",
        ) from None
    release = bzimage_release(data[:65536])
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
        digest=hashlib.sha256(data).hexdigest(),
        release=release,
        modules=modules.resolve(),
        early_modules=early_module_files(modules, source.initrd_modules),
    )
