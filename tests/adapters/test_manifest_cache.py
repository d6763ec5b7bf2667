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
    manifest_cache.remember(bad)  # a cache that lies
    assert main(["validate", str(path)]) == 1
