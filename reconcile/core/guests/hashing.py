"""A guest definition's spec hash: every field by name, nested values canonical.

Pure. Shared by the machine kinds (core/guests/imageless.py, core/guests/disk.py), so that a
field added to a definition is hashed without anyone listing it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any


def _canonical(value: object) -> object:
    """A nested value as JSON: a dataclass is the list of its fields in order."""
    if is_dataclass(value) and not isinstance(value, type):
        return [_canonical(getattr(value, f.name)) for f in fields(value)]
    if isinstance(value, tuple | list):
        return [_canonical(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    return value


def spec_hash(definition: Any) -> str:  # any frozen dataclass of a definition
    """sha256 of every field of the definition, by name, each nested value canonical."""
    canonical = {f.name: _canonical(getattr(definition, f.name)) for f in fields(definition)}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()
