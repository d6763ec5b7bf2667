"""What nix.py keeps in the state directory: the eval cache returns only store paths, and
GC roots are observed with readlinks and restored when missing, elsewhere or unregistered."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from reconcile.adapters import nix
from reconcile.core.guests.observed import GcRootFacts

GOOD = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-demo-a"
OTHER = "/nix/store/zyxwvsrqpnmlkjihgfdcba9876543210-demo-b"


@pytest.mark.parametrize(
    "paths",
    [
        {"f#a": "/etc/passwd"},
        {"f#a": "--option"},
        {"f#a": 3},
        {"f#a": GOOD + "/../../etc"},
        {"f#a": "/nix/store/short-demo"},
        {"f#a": GOOD, "f#b": None},
        ["f#a"],
    ],
)
def test_the_eval_cache_returns_only_store_paths(tmp_path: Path, paths: object) -> None:
    cache = nix.EvalCache(tmp_path / "eval-cache.json")
    cache.path.write_text(json.dumps({"narHash": "sha256-x", "paths": paths}))
    assert cache.load("sha256-x") == {}


def test_the_eval_cache_round_trips(tmp_path: Path) -> None:
    cache = nix.EvalCache(tmp_path / "eval-cache.json")
    cache.store("sha256-x", {"f#a": GOOD})
    assert cache.load("sha256-x") == {"f#a": GOOD}
    assert cache.load("sha256-y") == {}


@pytest.fixture
def auto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "auto"
    monkeypatch.setattr(nix, "GCROOTS_AUTO", directory)
    return directory


def test_gc_roots_are_observed_and_restored(tmp_path: Path, auto: Path) -> None:
    root = tmp_path / "gcroots"
    assert nix.observe_gc_roots(root) == {}
    nix.sync_gc_roots(root / "a", {GOOD})
    nix.sync_gc_roots(root / "b", {OTHER})
    name_a, name_b = GOOD.rsplit("/", 1)[1], OTHER.rsplit("/", 1)[1]
    assert nix.observe_gc_roots(root) == {
        "a": {name_a: GcRootFacts(GOOD, True)},
        "b": {name_b: GcRootFacts(OTHER, True)},
    }
    for link in auto.iterdir():  # b's registration gone
        if os.readlink(link) == str(root / "b" / name_b):
            link.unlink()
    (root / "a" / name_a).unlink()
    (root / "a" / name_a).symlink_to(OTHER)  # a's pointing elsewhere
    assert nix.observe_gc_roots(root) == {
        "a": {name_a: GcRootFacts(OTHER, True)},  # registered (the link), but elsewhere
        "b": {name_b: GcRootFacts(OTHER, False)},
    }
    nix.sync_gc_roots(root / "a", {GOOD})
    nix.sync_gc_roots(root / "b", {OTHER})
    assert nix.observe_gc_roots(root) == {
        "a": {name_a: GcRootFacts(GOOD, True)},
        "b": {name_b: GcRootFacts(OTHER, True)},
    }
