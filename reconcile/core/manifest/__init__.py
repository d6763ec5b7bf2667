"""The manifest language: TOML text in, frozen desired state or every problem out.

parse_manifest is pure (bytes in, values out): syntax (tomlkit), shape (the JSON Schema),
then meaning (semantics.check), each located as FILE:LINE: key.path.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from reconcile.core.desired import Manifest
from reconcile.core.errors import ManifestError, Problem
from reconcile.core.manifest import locate, schema, semantics
from reconcile.core.manifest.build import build

MAX_BYTES = 1 << 20  # a lab of thousands of guests fits; anything larger is a mistake
# tomlkit takes ~10 s to explain a syntax error at the end of 1 MiB; past this size,
# tomllib's own located message is given instead (a second or two at most).
EXPLAIN_MAX_BYTES = 256 << 10
# No key of the schema has more than a few parts, and tomllib's time grows with the square
# of a dotted key's parts (500,000 parts in 1 MiB would take an hour): refuse long ones
# before parsing. A line start, `[`, `{` or `,`, then parts and dots (bare or quoted).
MAX_KEY_PARTS = 32
_LONG_KEY = re.compile(
    r"""(?:^|[\[{,])[ \t]*(?:(?:[A-Za-z0-9_-]+|"[^"\n]*"|'[^'\n]*')[ \t]*\.[ \t]*)"""
    + f"{{{MAX_KEY_PARTS}}}",
    re.MULTILINE,
)


def format_path(path: locate.Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = str(part)
            bare = text and all(c.isalnum() or c in "_-" for c in text)
            out += ("." if out else "") + (text if bare else f'"{text}"')
    return out


def _fail(
    file: Path,
    message: str,
    *,
    line: int | None = None,
    column: int | None = None,
    hint: str | None = None,
) -> ManifestError:
    return ManifestError([Problem(str(file), line, column, "", message, hint)])


def _decode(data: bytes, file: Path) -> str:
    if len(data) > MAX_BYTES:
        raise _fail(
            file,
            f"the file is {len(data)} bytes; manifests are capped at {MAX_BYTES}",
            hint="split the lab, or check that this is the right file",
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _fail(
            file,
            "not valid UTF-8 (TOML files are UTF-8)",
            line=line,
            column=column,
            hint="re-save the file as UTF-8",
        ) from None


def _tomlkit_error(text: str, file: Path) -> ManifestError | None:
    import tomlkit  # noqa: PLC0415 - only to explain a syntax error (tomllib reads the rest)
    from tomlkit.exceptions import ParseError, TOMLKitError  # noqa: PLC0415

    try:
        tomlkit.parse(text)
    except ParseError as exc:
        message = str(exc).split(" at line ")[0]
        return _fail(file, f"TOML syntax error: {message}", line=exc.line, column=exc.col + 1)
    except TOMLKitError as exc:  # some duplicate keys are found late and carry no position
        dup = locate.first_duplicate(text)
        return _fail(
            file,
            f"TOML error: {exc}" if dup is None else f"duplicate key {format_path(dup[0])}",
            line=None if dup is None else dup[1],
            hint="each key may appear once in a table",
        )
    except RecursionError:
        pass
    return None


def _syntax_error(text: str, file: Path, fast: Exception) -> ManifestError:
    """The located message for text tomllib refused, in tomlkit's words where it has them."""
    import tomllib  # noqa: PLC0415 - see read_documents

    if len(text) <= EXPLAIN_MAX_BYTES:
        explained = _tomlkit_error(text, file)
        if explained is not None:
            return explained
    message = str(fast) if isinstance(fast, tomllib.TOMLDecodeError) else "nested too deeply"
    where = re.search(r"\(at line (\d+), column (\d+)\)", message)
    if where is None:
        return _fail(file, f"TOML syntax error: {message}")
    return _fail(
        file,
        f"TOML syntax error: {message[: where.start()].strip()}",
        line=int(where.group(1)),
        column=int(where.group(2)),
    )


def located_problems(text: str, file: Path, findings: Iterable[schema.Finding]) -> list[Problem]:
    """Findings as `FILE:LINE: key.path: ...` problems, in the order of the file."""
    lines = locate.key_lines(text)  # only on failure: a valid manifest skips the scan
    problems = [
        Problem(
            str(file), locate.line_of(lines, f.path), None, format_path(f.path), f.message, f.hint
        )
        for f in findings
    ]
    return sorted(problems, key=lambda p: (p.line or 0, p.path))


# The TOML document as read, and a copy with every default filled in: what the schema stage
# leaves for the semantic checks and the build (plain dicts, lists and scalars).
Documents = tuple[dict[str, Any], dict[str, Any]]


def read_documents(data: bytes, file: Path) -> Documents:
    """The syntax and shape stages: the TOML document, schema-valid, and its defaults."""
    text = _decode(data, file)
    if not text.strip():
        raise _fail(
            file,
            "the manifest is empty",
            hint='start with [lab] name = "..." (see manifests/lab.toml)',
        )
    if long_key := _LONG_KEY.search(text):
        raise _fail(
            file,
            f"a key with more than {MAX_KEY_PARTS} dotted parts",
            line=text.count("\n", 0, long_key.end()) + 1,
            hint="no key of the manifest has that many; check the line",
        )
    # Loaded here: a manifest the cache knows is not read as TOML (adapters/manifest_cache.py).
    import tomllib  # noqa: PLC0415

    try:
        # tomllib reads 1000 guests in ~20 ms where tomlkit takes ~300 ms (docs/performance.md);
        # both implement TOML 1.0, so tomlkit is asked only to explain a syntax error.
        document = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise _syntax_error(text, file, exc) from None
    if findings := schema.validate(document):
        raise ManifestError(located_problems(text, file, findings))
    return document, schema.apply_defaults(document)


def parse_manifest(data: bytes, file: Path, *, documents: Documents | None = None) -> Manifest:
    """Parse and validate a manifest; raise ManifestError listing every problem.

    `documents` are what `read_documents` made of these exact bytes before, under this
    code (the caller's cache, adapters/manifest_cache.py): the syntax and shape stages are
    skipped, nothing else.
    """
    document, defaulted = documents or read_documents(data, file)

    def located(findings: list[schema.Finding]) -> ManifestError:
        return ManifestError(located_problems(_decode(data, file), file, findings))

    if findings := semantics.check(defaulted, document):
        raise located(findings)
    manifest = build(defaulted, file, hashlib.sha256(data).hexdigest())
    if findings := semantics.check_built(manifest):
        raise located(findings)
    return manifest
