"""Files a user names are read only when they are regular files, and with a bound."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconcile.adapters import kernel_build
from reconcile.adapters.files import NotRegularError, TooLargeError, read_regular
from reconcile.adapters.initrd import early_module_files
from reconcile.adapters.prebuilt_kernels import resolve_prebuilt
from reconcile.core.desired import Kernel, PrebuiltKernel
from reconcile.core.errors import ReconcileError


def test_a_regular_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    assert read_regular(path, 10) == b"x" * 10
    with pytest.raises(TooLargeError):
        read_regular(path, 9)


def test_fifo_and_devices_are_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(NotRegularError, match="FIFO"):
        read_regular(fifo, 1 << 20)
    with pytest.raises(NotRegularError, match="device"):
        read_regular(Path("/dev/zero"), 1 << 20)
    link = tmp_path / "zero"
    link.symlink_to("/dev/zero")
    with pytest.raises(NotRegularError, match="device"):
        read_regular(link, 1 << 20)
    with pytest.raises(NotRegularError, match="directory"):
        read_regular(tmp_path, 1 << 20)


@pytest.mark.parametrize("image", ["fifo", "/dev/zero"])
def test_a_kernel_image_that_is_not_a_file_is_a_clear_error(tmp_path: Path, image: str) -> None:
    path = Path(image)
    if image == "fifo":
        path = tmp_path / "vmlinuz"
        os.mkfifo(path)
    kernel = Kernel("host", PrebuiltKernel(path, None, ()))
    with pytest.raises(ReconcileError, match=r"kernel 'host': cannot read image .*not a regular"):
        resolve_prebuilt(kernel)


def test_a_modules_dep_that_is_a_fifo_is_a_clear_error(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "modules.dep")
    with pytest.raises(ReconcileError, match=r"modules\.dep: is a FIFO"):
        early_module_files(tmp_path, ("virtio_pci",))


def test_a_kernel_fragment_that_is_a_device_is_a_clear_error(tmp_path: Path) -> None:
    link = tmp_path / "frag.config"
    link.symlink_to("/dev/zero")
    with pytest.raises(ReconcileError, match=r"cannot read the kernel fragment .*not a regular"):
        kernel_build._read(link, "fragment")
