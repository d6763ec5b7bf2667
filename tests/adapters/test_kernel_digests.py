"""A prebuilt kernel's digest kept by stat: reused only for the very same file state."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from reconcile.adapters import prebuilt_kernels
from reconcile.core.desired import Kernel, PrebuiltKernel

HOST_IMAGE = Path("/vmlinuz")


@pytest.fixture
def image(tmp_path: Path) -> Path:
    assert HOST_IMAGE.exists(), "no /vmlinuz: scripts/setup.sh installs linux-image-amd64"
    path = tmp_path / "vmlinuz"
    shutil.copyfile(HOST_IMAGE.resolve(), path)
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_unchanged_image_is_not_read_again_and_a_changed_byte_is_seen(
    image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prebuilt_kernels, "SETTLED_NS", 0)
    digests = tmp_path / "kernel-digests.json"
    kernel = Kernel("host", PrebuiltKernel(image, None, ()))
    first = prebuilt_kernels.resolve_prebuilt(kernel, digests)
    assert first.digest == sha(image) and str(image) in json.loads(digests.read_text())

    reads: list[Path] = []
    real = prebuilt_kernels.read_regular

    def counting(path: Path, limit: int) -> bytes:
        reads.append(path)
        return real(path, limit)

    monkeypatch.setattr(prebuilt_kernels, "read_regular", counting)
    again = prebuilt_kernels.resolve_prebuilt(kernel, digests)
    assert again == first and image not in reads  # only the digests file was read

    # one byte changed in place, size and mtime put back: ctime still tells
    st = image.stat()
    with image.open("r+b") as handle:
        handle.seek(st.st_size - 1)
        last = handle.read(1)
        handle.seek(st.st_size - 1)
        handle.write(bytes([last[0] ^ 0xFF]))
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))
    changed = prebuilt_kernels.resolve_prebuilt(kernel, digests)
    assert changed.digest == sha(image) != first.digest


def test_a_file_changed_just_now_is_not_remembered(image: Path, tmp_path: Path) -> None:
    digests = tmp_path / "kernel-digests.json"
    kernel = Kernel("host", PrebuiltKernel(image, None, ()))
    assert prebuilt_kernels.resolve_prebuilt(kernel, digests).digest == sha(image)
    assert not digests.exists()  # copied a moment ago: its ctime is too recent to trust
