"""Reading the files a user names, with errors that say what is wrong with the path."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from reconcile.core.errors import ManifestError, Problem, ReconcileError
from reconcile.core.manifest import MAX_BYTES


class NotRegularError(OSError):
    """The path is a FIFO, a device, a socket or a directory: never read (a FIFO blocks,
    /dev/zero never ends)."""


class TooLargeError(OSError):
    """The file is larger than what a file of its kind can sensibly be."""


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes, following links.

    Opened non-blocking, so a FIFO cannot hang the open, and checked with fstat on the
    open file (no race with a swap of the path); read with a bound whatever fstat said.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else _kind(st.st_mode)
            raise NotRegularError(errno.EINVAL, f"is {kind}, not a regular file")
        if st.st_size > limit:
            raise TooLargeError(errno.EFBIG, f"is {st.st_size} bytes, more than {limit}")
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise TooLargeError(errno.EFBIG, f"is more than {limit} bytes")
        return data
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"


def read_manifest(path: Path) -> bytes:
    """The manifest's bytes; a missing path, a directory, a FIFO or device, or a huge file is
    a ManifestError."""

    def fail(message: str, hint: str | None = None) -> ManifestError:
        return ManifestError([Problem(str(path), None, None, "", message, hint)])

    try:
        # One byte more than the cap, so that parse_manifest says how the cap was exceeded.
        return read_regular(path, MAX_BYTES + 1)
    except NotRegularError as exc:
        if path.is_dir():
            raise fail("is a directory, not a manifest file", "name a .toml file in it") from None
        raise fail(f"{exc.strerror}", "a manifest is read from a regular .toml file") from None
    except TooLargeError:
        size = path.stat().st_size
        raise fail(f"the file is {size} bytes; manifests are capped at {MAX_BYTES}") from None
    except FileNotFoundError:
        raise fail("no such file", "check the path; manifests usually live in manifests/") from None
    except PermissionError:
        raise fail("permission denied") from None
    except OSError as exc:
        raise fail(f"cannot read: {exc.strerror}") from None


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Replace `path` with `text` all at once: a reader sees the old file or the new, never half.

    node_exporter's textfile collector may read at any moment, and a crash must not leave a
    torn file. The temporary name starts with a dot and ends in `.tmp`, so the collector
    (which reads `*.prom`) never picks it up. `mode` is set exactly, whatever the umask.
    """
    import tempfile  # noqa: PLC0415 - a no-op plan writes nothing: not loaded for it

    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_directory(path.parent)
    except OSError as exc:
        raise ReconcileError(
            f"cannot write {path}: {exc.strerror or exc}",
            hint="check that its directory exists and is writable by this user",
        ) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable: it lives in the directory, not in the file."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
