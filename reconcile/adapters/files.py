"""Reading the files a user names, with errors that say what is wrong with the path."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from reconcile.core.errors import ManifestError, Problem, ReconcileError
from reconcile.core.manifest import MAX_BYTES


def read_manifest(path: Path) -> bytes:
    """The manifest's bytes; a missing path, a directory or a huge file is a ManifestError."""

    def fail(message: str, hint: str | None = None) -> ManifestError:
        return ManifestError([Problem(str(path), None, None, "", message, hint)])

    try:
        if path.is_dir():
            raise fail("is a directory, not a manifest file", "name a .toml file in it")
        with path.open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise fail("no such file", "check the path; manifests usually live in manifests/") from None
    except PermissionError:
        raise fail("permission denied") from None
    except OSError as exc:
        raise fail(f"cannot read: {exc.strerror}") from None
    return data


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Replace `path` with `text` all at once: a reader sees the old file or the new, never half.

    node_exporter's textfile collector may read at any moment, and a crash must not leave a
    torn file. The temporary name starts with a dot and ends in `.tmp`, so the collector
    (which reads `*.prom`) never picks it up. `mode` is set exactly, whatever the umask.
    """
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
