"""Reading the files a user names, with errors that say what is wrong with the path."""

from __future__ import annotations

from pathlib import Path

from reconcile.core.errors import ManifestError, Problem
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
