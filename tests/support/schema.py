"""Reading the manifest schema from tests: the schema of the value at a key path."""

from __future__ import annotations

from typing import Any

from reconcile.core.manifest.schema import manifest_schema, resolve


def subschema_at(path: tuple[str | int, ...]) -> dict[str, Any] | None:
    """The schema of the value at `path` in a document, or None if the path leaves it."""
    node: dict[str, Any] = resolve(manifest_schema())
    for part in path:
        if isinstance(part, int):
            items = node.get("items")
            if not isinstance(items, dict):
                return None
            node = resolve(items)
        elif part in node.get("properties", {}):
            node = resolve(node["properties"][part])
        elif isinstance(node.get("additionalProperties"), dict):
            node = resolve(node["additionalProperties"])
        else:
            return None
    return node
