"""Early-module initrds: a real cpio reads them back; module order comes from modules.dep."""

from __future__ import annotations

import gzip
import hashlib
import subprocess
from pathlib import Path

from reconcile.adapters.initrd import cpio, early_module_files, guest_initrd
from reconcile.core.kernels.kmod import bzimage_release, load_order, module_name

DEP = """\
kernel/fs/fuse/virtiofs.ko: kernel/fs/fuse/fuse.ko kernel/drivers/virtio/virtio_ring.ko
kernel/fs/fuse/fuse.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci.ko: \
kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
"""


def test_load_order_puts_dependencies_first_once() -> None:
    assert load_order(DEP, ("virtio_pci", "virtiofs")) == [
        "kernel/drivers/virtio/virtio_ring.ko",
        "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
        "kernel/drivers/virtio/virtio_pci.ko",
        "kernel/fs/fuse/fuse.ko",
        "kernel/fs/fuse/virtiofs.ko",
    ]
    assert module_name("kernel/x/a-b.ko.xz") == "a_b"


def test_bzimage_release_of_the_host_kernel() -> None:
    image = Path("/vmlinuz").resolve()
    assert bzimage_release(image.read_bytes()[:65536]) == image.name.removeprefix("vmlinuz-")
    assert bzimage_release(b"\0" * 4096) is None


def test_cpio_reads_back_with_cpio(tmp_path: Path) -> None:
    archive = cpio([("early", b"", 0o040755), ("early/order", b"a.ko\n", 0o100644)])
    listing = subprocess.run(
        ["cpio", "-t"], input=archive, capture_output=True, check=True
    ).stdout.decode()
    assert listing.split() == ["early", "early/order"]


def kernel_and_system(tmp_path: Path) -> tuple[Path, Path, tuple[str, ...]]:
    """A modules directory with virtiofs and its dependencies, a system initrd, and the
    module files to load early."""
    modules = tmp_path / "6.1"
    (modules / "kernel/fs/fuse").mkdir(parents=True)
    (modules / "kernel/drivers/virtio").mkdir(parents=True)
    (modules / "modules.dep").write_text(DEP)
    for rel in load_order(DEP, ("virtiofs",)):
        (modules / rel).write_bytes(b"ko:" + rel.encode())
    system = tmp_path / "initrd"
    system.write_bytes(gzip.compress(cpio([("init", b"#!/bin/sh\n", 0o100755)])))
    files = early_module_files(modules, ("virtiofs",))
    return modules, system, files


def test_guest_initrd_is_early_modules_then_the_system_initrd(tmp_path: Path) -> None:
    modules, system, files = kernel_and_system(tmp_path)
    out = guest_initrd(system, "/nix/store/x-sys", modules, files, tmp_path / "out")
    data = out.read_bytes()
    assert data.endswith(system.read_bytes())
    head = data[: len(data) - len(system.read_bytes())]
    listing = subprocess.run(["cpio", "-t"], input=head, capture_output=True, check=True)
    assert listing.stdout.decode().split() == [
        "early",
        "early/virtio_ring.ko",
        "early/fuse.ko",
        "early/virtiofs.ko",
        "early/order",
    ]
    # the same inputs reuse the file; no early modules means the system's own initrd
    assert guest_initrd(system, "/nix/store/x-sys", modules, files, tmp_path / "out") == out
    assert guest_initrd(system, "/nix/store/x-sys", modules, (), tmp_path / "out") == system


def test_a_damaged_cached_initrd_is_made_anew(tmp_path: Path) -> None:
    modules, system, files = kernel_and_system(tmp_path)
    out = guest_initrd(system, "/nix/store/x-sys", modules, files, tmp_path / "out")
    good = out.read_bytes()
    digest = out.with_name(out.name + ".sha256")
    assert digest.read_text().strip() == hashlib.sha256(good).hexdigest()
    out.write_bytes(good[: len(good) // 2])  # half written (a full disk), or damaged
    assert guest_initrd(system, "/nix/store/x-sys", modules, files, tmp_path / "out") == out
    assert out.read_bytes() == good
    digest.unlink()  # a file without its digest (killed before it was written) is made anew
    out.write_bytes(b"junk")
    guest_initrd(system, "/nix/store/x-sys", modules, files, tmp_path / "out")
    assert out.read_bytes() == good and digest.is_file()
