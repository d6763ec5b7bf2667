"""The manifest's JSON Schema: loading it, validating against it, and its defaults.

The schema file (schema/manifest.schema.json, shipped inside the package) is the single
source of truth for the manifest's shape, defaults and documentation.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jsonschema

from reconcile.core.manifest.locate import Path
from reconcile.core.units import duration_problem, size_problem

Json = Any

_TYPE_NAMES = {
    "object": "a table",
    "array": "an array",
    "string": "a string",
    "integer": "an integer",
    "boolean": "a boolean (true or false)",
    "number": "a number",
}


@dataclass(frozen=True)
class Finding:
    path: Path
    message: str
    hint: str | None = None


def _jsonschema() -> ModuleType:
    """jsonschema (~40 ms to import), only when a document is validated: a manifest whose
    exact bytes were validated before by this code is not (adapters/manifest_cache.py)."""
    import jsonschema  # noqa: PLC0415

    return jsonschema


@functools.cache
def manifest_schema() -> dict[str, Json]:
    text = resources.files("reconcile.core.manifest").joinpath("manifest.schema.json").read_text()
    schema: dict[str, Json] = json.loads(text)
    return schema


# id(node) -> (node, resolved): apply_defaults resolves the same few nodes for every guest
# (~25 µs a guest). The node is kept, so its id cannot be reused while cached; a node is
# never mutated (the schema is loaded once, and defaults are copied, not edited).
_RESOLVED: dict[int, tuple[dict[str, Json], dict[str, Json]]] = {}


def resolve(node: dict[str, Json]) -> dict[str, Json]:
    """Follow local `$ref`s (the schema uses only `#/$defs/...`); local keys win."""
    if "$ref" not in node:
        return node
    cached = _RESOLVED.get(id(node))
    if cached is not None and cached[0] is node:
        return cached[1]
    resolved = _resolve(node)
    if len(_RESOLVED) < 4096:
        _RESOLVED[id(node)] = (node, resolved)
    return resolved


def _resolve(node: dict[str, Json]) -> dict[str, Json]:
    root = manifest_schema()
    while "$ref" in node:
        target: Json = root
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def type_name(value: Json) -> str:
    match value:
        case bool():
            return "a boolean"
        case int():
            return "an integer"
        case float():
            return "a float"
        case str():
            return "a string"
        case list():
            return "an array"
        case dict():
            return "a table"
        case _:
            return f"a {type(value).__name__}"


def _did_you_mean(word: str, choices: list[str]) -> str | None:
    import difflib  # noqa: PLC0415 - only for a manifest with a mistake

    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def _describe(error: jsonschema.ValidationError) -> Iterator[Finding]:
    path: Path = tuple(error.absolute_path)
    schema: dict[str, Json] = resolve(error.schema) if isinstance(error.schema, dict) else {}
    value: Any = error.instance
    expected: Any = error.validator_value
    match error.validator:
        case "additionalProperties":
            known = sorted(schema.get("properties", {}))
            for key in sorted(set(value) - set(known)):
                hint = _did_you_mean(key, known) or (
                    f"known keys here: {', '.join(known)}" if known else None
                )
                yield Finding((*path, key), "unknown key", hint)
        case "required":
            yield Finding(
                path,
                f"missing required key '{expected[0]}'" if len(expected) == 1 else error.message,
            )
        case "propertyNames":
            name_schema = resolve(expected)
            bad = next((k for k in value if not _matches(k, name_schema)), None)
            yield Finding(
                (*path, bad) if bad is not None else path,
                f"invalid name {bad!r}",
                name_schema.get("description"),
            )
        case "type":
            names = [expected] if isinstance(expected, str) else list(expected)
            wanted = " or ".join(_TYPE_NAMES.get(n, n) for n in names)
            yield Finding(path, f"expected {wanted}, got {type_name(value)}")
        case "enum":
            options = ", ".join(repr(o) for o in expected)
            yield Finding(path, f"expected one of {options}, got {value!r}")
        case "const":
            yield Finding(path, f"must be {expected!r}, got {value!r}")
        case "pattern" if "propertyNames" in error.absolute_schema_path:
            yield Finding((*path, value), "invalid name", _format(schema))
        case "pattern":
            yield Finding(path, f"invalid value {value!r}", _format(schema))
        case "x-size" | "x-duration":
            yield Finding(path, error.message, _bounds_hint(expected))
        case "minimum" | "exclusiveMinimum":
            yield Finding(path, f"must be at least {expected}, got {value}")
        case "maximum" | "exclusiveMaximum":
            yield Finding(path, f"must be at most {expected}, got {value}")
        case "minLength":
            yield Finding(path, "must not be empty")
        case "minItems":
            yield Finding(path, f"needs at least {expected} item(s)")
        case "uniqueItems":
            yield Finding(path, "items must be unique")
        case "minProperties" | "maxProperties":
            keys = ", ".join(sorted(schema.get("properties", {})))
            yield Finding(path, f"give exactly one of: {keys}")
        case _:
            yield Finding(path, error.message)


def _bounds_hint(bounds: dict[str, Json]) -> str:
    whole = " in whole seconds" if bounds.get("wholeSeconds") else ""
    return f"from {bounds['minimum']} to {bounds['maximum']}{whole}"


def _format(schema: dict[str, Json]) -> str | None:
    hint: str | None = schema.get("x-format") or schema.get("description")
    return hint


def _matches(name: str, schema: dict[str, Json]) -> bool:
    valid: bool = _jsonschema().Draft202012Validator(schema).is_valid(name)
    return valid


def ecma_anchors(pattern: str) -> str:
    r"""A schema pattern as Python must run it to mean what it means in ECMA-262.

    jsonschema runs patterns with Python's `re.search`, where a final `$` also matches
    before a trailing newline: `^[a-z]+$` would accept "lab\n". `\Z` is the end of the
    text, as `$` is in JSON Schema's ECMA-262 regexes; the schema file keeps the portable `$`.
    """
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        return pattern[:-1] + "\\Z"
    return pattern


def _inline(node: Json) -> Json:
    """The schema with every local `$ref` replaced by its target (the schema has no cycles),
    and every pattern anchored as in ECMA-262 (`ecma_anchors`).

    jsonschema resolves a `$ref` on every visit; inlined, validating 1000 guests takes a
    third of the time.
    """
    if isinstance(node, dict):
        if "$ref" in node:
            target = resolve({"$ref": node["$ref"]})
            node = resolve(node)
            if "description" in target:  # the format's own words make the better hint
                node = {**node, "x-format": target["description"]}
        return {
            k: ecma_anchors(v) if k == "pattern" and isinstance(v, str) else _inline(v)
            for k, v in node.items()
            if k != "$defs"
        }
    if isinstance(node, list):
        return [_inline(item) for item in node]
    return node


def _size(
    validator: Json, bounds: dict[str, str], instance: Json, schema: Json
) -> Iterator[jsonschema.ValidationError]:
    """`x-size`: a size the code can use (memory in whole MiB, nothing that rounds to 0)."""
    try:
        problem = size_problem(
            instance, bounds["minimum"], bounds["maximum"], bounds.get("multipleOf")
        )
    except (TypeError, ValueError):  # not a size: `type` and `pattern` say so
        return
    if problem:
        yield _jsonschema().ValidationError(problem)


def _duration(
    validator: Json, bounds: dict[str, Json], instance: Json, schema: Json
) -> Iterator[jsonschema.ValidationError]:
    """`x-duration`: positive where zero means nothing, bounded so no timer overflows."""
    try:
        problem = duration_problem(
            instance,
            bounds["minimum"],
            bounds["maximum"],
            whole_seconds=bounds.get("wholeSeconds", False),
        )
    except (TypeError, ValueError):
        return
    if problem:
        yield _jsonschema().ValidationError(problem)


def _is_integer(checker: Json, instance: Json) -> bool:
    # JSON Schema counts 2.0 as an integer; TOML does not, and `vcpus = 2.0` would reach
    # libvirt as "2.0". An integer is an int (and not a bool).
    return isinstance(instance, int) and not isinstance(instance, bool)


@functools.cache
def _validator() -> Any:
    jsonschema = _jsonschema()
    # The schema's own keywords: bounds a pattern cannot express, checked with the code's
    # parsers.
    validator = jsonschema.validators.extend(
        jsonschema.Draft202012Validator,
        validators={"x-size": _size, "x-duration": _duration},
        type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
    )
    return validator(_inline(manifest_schema()))


def validate(document: dict[str, Json]) -> list[Finding]:
    """Every schema violation in `document`, in document order, described for people."""
    errors = list(_validator().iter_errors(document))
    # A value of the wrong type fails its other keywords too; say only what matters.
    mistyped = {tuple(e.absolute_path) for e in errors if e.validator == "type"}
    errors = [e for e in errors if e.validator == "type" or tuple(e.absolute_path) not in mistyped]
    # A value of the wrong shape ("0GiB") is not also out of bounds.
    misshaped = {tuple(e.absolute_path) for e in errors if e.validator == "pattern"}
    errors = [e for e in errors if not _bounds(e) or tuple(e.absolute_path) not in misshaped]
    return [problem for error in errors for problem in _describe(error)]


def _bounds(error: jsonschema.ValidationError) -> bool:
    return error.validator in ("x-size", "x-duration")


def apply_defaults(value: Json, schema: dict[str, Json] | None = None) -> Json:
    """A copy of a schema-valid `value` with every object's missing defaults filled in."""
    node = resolve(schema if schema is not None else manifest_schema())
    if isinstance(value, dict):
        props: dict[str, Json] = node.get("properties", {})
        extra = node.get("additionalProperties")
        filled = {
            key: apply_defaults(
                item, props[key] if key in props else extra if isinstance(extra, dict) else {}
            )
            for key, item in value.items()
        }
        for key, raw in props.items():
            prop = resolve(raw)
            if key not in filled and "default" in prop:
                filled[key] = apply_defaults(prop["default"], prop)
        return filled
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return [apply_defaults(item, node["items"]) for item in value]
    return value
