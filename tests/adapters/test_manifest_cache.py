"""The schema-valid cache: only the exact bytes, under this code, in a directory of ours."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconcile.adapters import manifest_cache


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    where = tmp_path / "cache"
    monkeypatch.setenv("RECONCILE_CACHE_DIR", str(where))
    return where


def test_a_remembered_manifest_is_known_and_any_other_byte_is_not(cache: Path) -> None:
    data = b'[lab]\nname = "a"\n'
    assert not manifest_cache.schema_valid(data)
    manifest_cache.remember(data)
    assert manifest_cache.schema_valid(data)
    assert not manifest_cache.schema_valid(data + b" ")
    assert not manifest_cache.schema_valid(data.replace(b"a", b"b"))
    assert oct(cache.stat().st_mode & 0o777) == "0o700"


def test_a_directory_others_can_write_is_not_trusted(cache: Path) -> None:
    data = b'[lab]\nname = "a"\n'
    manifest_cache.remember(data)
    cache.chmod(0o777)
    assert not manifest_cache.schema_valid(data)


def test_old_entries_are_dropped(cache: Path) -> None:
    for i in range(manifest_cache.KEEP + 5):
        manifest_cache.remember(f"# {i}\n".encode())
    assert len(list(cache.iterdir())) == manifest_cache.KEEP
