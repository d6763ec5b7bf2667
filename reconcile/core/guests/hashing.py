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

_PLAIN = frozenset({str, int, bool, float, type(None)})
_FIELDS: dict[type, tuple[str, ...]] = {}  # a dataclass's field names, in order


def _names(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in fields(cls))
    return names


def _canonical(value: object) -> object:
    """A nested value as JSON: a dataclass is the list of its fields in order."""
    cls = type(value)
    if cls in _PLAIN:  # most values: checked first, a plan hashes every guest's
        return value
    if is_dataclass(cls):  # an instance (a dataclass itself has type `type`, which is not)
        return [_canonical(getattr(value, name)) for name in _names(cls)]
    if isinstance(value, tuple | list):
        return [_canonical(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    return value


def spec_hash(definition: Any) -> str:  # any frozen dataclass of a definition
    """sha256 of every field of the definition, by name, each nested value canonical."""
    canonical = {name: _canonical(getattr(definition, name)) for name in _names(type(definition))}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()
