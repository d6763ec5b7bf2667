"""The manifest cache: only the exact bytes, under this code, in a directory of ours."""

from __future__ import annotations

import marshal
import tomllib
from pathlib import Path

import pytest

from reconcile.adapters import manifest_cache
from reconcile.core.manifest import read_documents
from reconcile.orchestration import pipeline


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    where = tmp_path / "cache"
    monkeypatch.setenv("RECONCILE_CACHE_DIR", str(where))
    return where


DATA = b'[lab]\nname = "a"\n'


def test_a_remembered_manifest_is_known_and_any_other_byte_is_not(cache: Path) -> None:
    parsed = read_documents(DATA, Path("lab.toml"))
    assert manifest_cache.documents(DATA) is None
    manifest_cache.remember(DATA, parsed)
    assert manifest_cache.documents(DATA) == parsed
    assert manifest_cache.documents(DATA + b" ") is None
    assert manifest_cache.documents(DATA.replace(b"a", b"b")) is None
    assert oct(cache.stat().st_mode & 0o777) == "0o700"
    assert [oct(p.stat().st_mode & 0o777) for p in cache.iterdir()] == ["0o600"]


def test_a_directory_others_can_write_is_not_trusted(cache: Path) -> None:
    manifest_cache.remember(DATA, ({}, {}))
    cache.chmod(0o777)
    assert manifest_cache.documents(DATA) is None


@pytest.mark.parametrize(
    "entry", [b"", b"garbage", marshal.dumps([{}, {}]), marshal.dumps(({}, 1))]
)
def test_an_entry_that_is_not_two_documents_is_a_miss(cache: Path, entry: bytes) -> None:
    manifest_cache.remember(DATA, ({}, {}))
    (only,) = cache.iterdir()
    only.write_bytes(entry)
    assert manifest_cache.documents(DATA) is None


def test_a_document_marshal_cannot_write_is_not_remembered(cache: Path) -> None:
    data = b"[lab]\nwhen = 2026-12-02\n"
    manifest_cache.remember(data, (tomllib.loads(data.decode()), {}))
    assert manifest_cache.documents(data) is None


def test_old_entries_are_dropped(cache: Path) -> None:
    for i in range(manifest_cache.KEEP + 5):
        manifest_cache.remember(f"# {i}\n".encode(), ({}, {}))
    assert len(list(cache.iterdir())) == manifest_cache.KEEP


def test_a_plan_of_unchanged_bytes_reads_no_toml(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second load of the same bytes is the cache's documents, built the same."""
    path = tmp_path / "lab.toml"
    path.write_bytes(DATA + b'flake = "/nonexistent"\n[hypervisors.h]\nuri = "test:///default"\n')
    first = pipeline.load(path)
    monkeypatch.setattr(tomllib, "loads", _refuse)
    assert pipeline.load(path) == first
    path.write_bytes(path.read_bytes() + b"\n")
    with pytest.raises(AssertionError, match="read as TOML"):
        pipeline.load(path)


def _refuse(text: str) -> object:
    raise AssertionError("read as TOML")


def test_validate_always_validates_in_full_and_leaves_the_cache_alone(
    cache: Path, tmp_path: Path
) -> None:
    """A manifest the cache (wrongly) calls schema-valid is still refused by `validate`."""
    from reconcile.cli import main  # noqa: PLC0415

    bad = b'[lab]\nname = "a"\nnot_a_key = 1\n'
    path = tmp_path / "lab.toml"
    path.write_bytes(bad)
    assert main(["validate", str(path)]) == 1
    assert not cache.exists() or not any(cache.iterdir())
    manifest_cache.remember(bad, (tomllib.loads(bad.decode()), {}))  # a cache that lies
    assert main(["validate", str(path)]) == 1
