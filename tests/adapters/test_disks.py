"""The disk files of disk guests, made and read with the real qemu-img (fast: no guest)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reconcile.adapters import disks
from reconcile.core.desired import DiskFormat
from reconcile.core.errors import ProbeError, ReconcileError

MIB = 1 << 20


def info(path: Path) -> str:
    return subprocess.run(
        ["qemu-img", "info", "--backing-chain", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_an_overlay_names_its_backing_format_and_reads_back_from_its_header(tmp_path: Path) -> None:
    base = tmp_path / "image" / "nixos.qcow2"
    base.parent.mkdir()
    disks.create_data_disk(base, 64 * MIB)  # any qcow2 will do as a base
    overlay = tmp_path / "guest" / "disk.qcow2"
    disks.create_overlay(overlay, base, DiskFormat.QCOW2, 128 * MIB)
    found = disks.inspect(overlay)
    assert found is not None
    assert (found.virtual_size, found.backing) == (128 * MIB, str(base))
    assert "backing file format: qcow2" in info(overlay)
    assert not list(overlay.parent.glob(".*.tmp"))  # made under another name, then renamed
    disks.grow(overlay, 256 * MIB)
    grown = disks.inspect(overlay)
    assert grown is not None and grown.virtual_size == 256 * MIB


def test_an_overlay_smaller_than_its_image_is_refused_before_qemu_img(tmp_path: Path) -> None:
    base = tmp_path / "base.img"
    base.write_bytes(b"\0" * (2 * MIB))
    with pytest.raises(ReconcileError, match="smaller than its image"):
        disks.create_overlay(tmp_path / "o.qcow2", base, DiskFormat.RAW, MIB)
    assert not (tmp_path / "o.qcow2").exists()


def test_inspect_tells_missing_from_unreadable(tmp_path: Path) -> None:
    assert disks.inspect(tmp_path / "nothing.qcow2") is None
    junk = tmp_path / "junk.qcow2"
    junk.write_bytes(b"not a qcow2 image at all, but long enough")
    with pytest.raises(ProbeError, match="not a qcow2 image"):
        disks.inspect(junk)


def test_the_image_file_is_the_one_of_its_format_in_the_output(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "nix-support").mkdir()
    (tmp_path / "out" / "nix-support" / "hydra-build-products").write_text("file")
    (tmp_path / "out" / "nixos.qcow2").write_text("")
    assert disks.image_file(str(tmp_path / "out"), DiskFormat.QCOW2).name == "nixos.qcow2"
    with pytest.raises(ReconcileError, match="holds 0 raw images"):
        disks.image_file(str(tmp_path / "out"), DiskFormat.RAW)
