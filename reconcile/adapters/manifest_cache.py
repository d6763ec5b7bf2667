"""What this code made of a manifest's exact bytes before: its TOML document, schema-valid,
and the document with its defaults filled in.

Validating 1000 guests against the JSON Schema costs ~50 ms, importing jsonschema ~40 ms
more, and reading the TOML and filling the defaults ~30 ms: most of a no-op plan's fixed
cost. A manifest that passed is remembered in a file named by the sha256 of (the code that
parses and validates, the schema, the exact bytes), holding the two documents in `marshal`
format (plain dicts, lists and scalars: nothing in it is code that runs); only a hit on all
three skips those stages, so an invalid manifest can never be accepted: any change to the
file, the schema or the code (an editable install changes code without a new version) is a
miss, and a miss parses and validates in full. Semantic checks and the build always run.

The directory is `$RECONCILE_CACHE_DIR`, else `$XDG_CACHE_HOME/reconcile/manifests`, else
`~/.cache/reconcile/manifests`. It is used only when it is this user's and not writable by
anyone else (an entry is a claim of validity); any error reading or writing it means no cache.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import stat
from pathlib import Path

from reconcile.adapters.core_digest import core_digest
from reconcile.core.manifest import Documents

KEEP = 64  # entries: a lab's manifest changes now and then; older entries are dropped


def directory() -> Path:
    if explicit := os.environ.get("RECONCILE_CACHE_DIR"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "reconcile" / "manifests"


def _key(data: bytes) -> str:
    return hashlib.sha256(f"documents/2\0{core_digest()}\0".encode() + data).hexdigest()


def _trusted(path: Path) -> bool:
    try:
        info = path.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & 0o022


def documents(data: bytes) -> Documents | None:
    """What these exact bytes parsed to under this code, if they passed before; else None
    (also for an entry that cannot be read or is not two documents: then it is a miss)."""
    where = directory()
    if not _trusted(where):
        return None
    try:
        # Our own entry, in a directory only this user can write (`_trusted`): loading it
        # makes values and runs nothing; anything but two dicts is refused below.
        found = marshal.loads((where / _key(data)).read_bytes())  # noqa: S302
    except (OSError, ValueError, EOFError, TypeError):
        return None
    if not (isinstance(found, tuple) and len(found) == 2 and all(type(d) is dict for d in found)):
        return None
    return found[0], found[1]


def remember(data: bytes, parsed: Documents) -> None:
    """Record what these bytes parsed to (call only after a full, successful parse)."""
    where = directory()
    try:
        blob = marshal.dumps(parsed)
    except ValueError:
        return  # a value marshal cannot write (a TOML date): no entry, parsed in full
    try:
        where.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _trusted(where):
            return
        entry = where / _key(data)
        if entry.exists():
            return
        tmp = where / f".{entry.name}.{os.getpid()}"
        tmp.write_bytes(blob)  # whole or not at all: a reader never sees half an entry
        tmp.chmod(0o600)
        tmp.replace(entry)
        entries = sorted(where.iterdir(), key=lambda p: p.stat().st_mtime_ns)
        for old in entries[:-KEEP]:
            old.unlink(missing_ok=True)
    except OSError:
        return
