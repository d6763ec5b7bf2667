"""A disk guest's disk files: the qcow2 overlay on its base image, and its data disks.

Observation reads the qcow2 header (32 bytes, no process), so a no-op plan stays cheap.
Every file is made under a temporary name and renamed into place, so an apply killed
half-way leaves either no disk or a whole one, never a truncated overlay.
"""

from __future__ import annotations

import struct
from pathlib import Path

from reconcile.adapters import process
from reconcile.core.desired import DiskFormat
from reconcile.core.errors import ProbeError, ReconcileError
from reconcile.core.guests.disk import IMAGE_SUFFIXES
from reconcile.core.guests.observed import DiskFileFacts
from reconcile.core.units import format_size

QCOW2_MAGIC = b"QFI\xfb"
QEMU_IMG = "qemu-img"


def inspect(path: Path) -> DiskFileFacts | None:
    """A qcow2 file's virtual size and backing file; None when there is no file."""
    try:
        with path.open("rb") as f:
            header = f.read(32)
            if len(header) < 32 or header[:4] != QCOW2_MAGIC:
                raise ProbeError(f"{path} is not a qcow2 image")
            # version (4), backing file offset (8) and length (4), cluster bits (4), size (8)
            offset, length = struct.unpack(">QI", header[8:20])
            (size,) = struct.unpack(">Q", header[24:32])
            backing = b""
            if offset and 0 < length <= 4096:
                f.seek(offset)
                backing = f.read(length)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ProbeError(f"cannot read {path}: {exc.strerror}") from None
    return DiskFileFacts(size, backing.decode(errors="replace"))


def image_size(path: Path, fmt: DiskFormat) -> int:
    """A base image's virtual size (a raw image is its file's size)."""
    if fmt is DiskFormat.RAW:
        return path.stat().st_size
    found = inspect(path)
    if found is None:
        raise ReconcileError(f"base image {path} is missing")
    return found.virtual_size


def image_file(output: str, fmt: DiskFormat) -> Path:
    """The one image of `fmt` in a built image output (or the output, when it is a file)."""
    out = Path(output)
    if out.is_file():
        return out
    suffixes = IMAGE_SUFFIXES[fmt]
    found = sorted(p for p in out.rglob("*") if p.is_file() and p.name.endswith(suffixes))
    if len(found) != 1:
        raise ReconcileError(
            f"{output} holds {len(found)} {fmt.value} images ({', '.join(suffixes)}), not one",
            hint="point disk.image at an output with exactly one image, and set disk.format "
            "to its format",
        )
    return found[0]


def _made(path: Path, options: list[str], size_bytes: int, hint: str) -> None:
    """`qemu-img create OPTIONS TMP SIZE`, then renamed into place (paths are absolute)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    process.run([QEMU_IMG, "create", "-q", *options, str(tmp), str(size_bytes)], hint=hint)
    tmp.replace(path)


def create_overlay(path: Path, image: Path, fmt: DiskFormat, size_bytes: int) -> None:
    """A new qcow2 overlay backed by `image`, whose format is named, never probed."""
    base = image_size(image, fmt)
    if size_bytes < base:
        raise ReconcileError(
            f"the disk size {format_size(size_bytes)} is smaller than its image "
            f"({format_size(base)}, {image})",
            hint=f"set disk.size to at least {format_size(base)}",
        )
    options = ["-f", "qcow2", "-F", fmt.value, "-b", str(image)]
    _made(path, options, size_bytes, f"making the overlay {path} failed")


def create_data_disk(path: Path, size_bytes: int) -> None:
    _made(path, ["-f", "qcow2"], size_bytes, f"making the data disk {path} failed")


def grow(path: Path, size_bytes: int) -> None:
    """Grow a disk that no running guest uses (a running one grows through libvirt)."""
    process.run(
        [QEMU_IMG, "resize", "-q", "-f", "qcow2", str(path), str(size_bytes)],
        hint=f"growing {path} failed; it is unchanged",
    )


def remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.with_name(f".{path.name}.tmp").unlink(missing_ok=True)
