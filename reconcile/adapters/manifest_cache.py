"""Which manifests this code has already found schema-valid, by the sha256 of their bytes.

Validating 1000 guests against the JSON Schema costs ~50 ms, and importing jsonschema ~40 ms
more: most of a no-op plan's fixed cost. A manifest that passed is remembered as an empty
file named by the sha256 of (the code that validates, the schema, the exact bytes); only a
hit on all three skips the schema stage, so an invalid manifest can never be accepted: any
change to the file, the schema or the code (an editable install changes code without a new
version) is a miss, and a miss validates in full. Semantic checks always run.

The directory is `$RECONCILE_CACHE_DIR`, else `$XDG_CACHE_HOME/reconcile/manifests`, else
`~/.cache/reconcile/manifests`. It is used only when it is this user's and not writable by
anyone else (an entry is a claim of validity); any error reading or writing it means no cache.
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
from pathlib import Path

import reconcile

KEEP = 64  # entries: a lab's manifest changes now and then; older entries are dropped


def directory() -> Path:
    if explicit := os.environ.get("RECONCILE_CACHE_DIR"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "reconcile" / "manifests"


@functools.cache
def code_digest() -> str:
    """The validating code and the schema: every module of the core (the schema's own
    keywords use its parsers) and the schema file, by content."""
    core = Path(reconcile.__file__).parent / "core"
    digest = hashlib.sha256(reconcile.__version__.encode())
    for path in sorted(core.rglob("*")):
        if path.suffix in (".py", ".json") and path.is_file():
            digest.update(str(path.relative_to(core)).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _key(data: bytes) -> str:
    return hashlib.sha256(f"schema-valid/1\0{code_digest()}\0".encode() + data).hexdigest()


def _trusted(path: Path) -> bool:
    try:
        info = path.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & 0o022


def schema_valid(data: bytes) -> bool:
    """True only if these exact bytes passed this code's schema validation before."""
    where = directory()
    return _trusted(where) and (where / _key(data)).is_file()


def remember(data: bytes) -> None:
    """Record that these bytes passed (call only after a full, successful parse)."""
    where = directory()
    try:
        where.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _trusted(where):
            return
        entry = where / _key(data)
        if entry.exists():
            return
        entry.touch(mode=0o600)
        entries = sorted(where.iterdir(), key=lambda p: p.stat().st_mtime_ns)
        for old in entries[:-KEEP]:
            old.unlink(missing_ok=True)
    except OSError:
        return
