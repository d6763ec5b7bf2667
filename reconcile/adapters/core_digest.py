"""The code of reconcile's pure core, by content: what the caches of its results are keyed by.

A result of the core kept from an earlier run (adapters/manifest_cache.py, adapters/
parsed_domains.py) is used only under the same code: an editable install changes the code
without a new version, so every module of the core and its schema are hashed.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import reconcile


@functools.cache
def core_digest() -> str:
    """Every module of the core (its parsers, the schema's own keywords) and the schema
    file, by content, with the version."""
    core = Path(reconcile.__file__).parent / "core"
    digest = hashlib.sha256(reconcile.__version__.encode())
    for path in sorted(core.rglob("*")):
        if path.suffix in (".py", ".json") and path.is_file():
            digest.update(str(path.relative_to(core)).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()
