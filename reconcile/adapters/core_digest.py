"""The code of reconcile's pure core, by content: what the caches of its results are keyed by.

A result of the core kept from an earlier run (adapters/manifest_cache.py, adapters/
parsed_domains.py) is used only under the same code: an editable install changes the code
without a new version, so every module of the core and its schema are hashed.
"""

from __future__ import annotations

import functools
import hashlib
import os

import reconcile


@functools.cache
def core_digest() -> str:
    """Every module of the core (its parsers, the schema's own keywords) and the schema
    file, by content, with the version."""
    core = os.path.join(os.path.dirname(reconcile.__file__), "core")
    digest = hashlib.sha256(reconcile.__version__.encode())
    found = []
    for directory, subdirs, names in os.walk(core):
        subdirs[:] = [d for d in subdirs if d != "__pycache__"]  # bytecode is not the code
        found += [os.path.join(directory, n) for n in names if n.endswith((".py", ".json"))]
    for path in sorted(found):  # os.walk and a str path: a third of pathlib's rglob time
        with open(path, "rb") as handle:
            digest.update(os.path.relpath(path, core).encode() + b"\0")
            digest.update(handle.read() + b"\0")
    return digest.hexdigest()
