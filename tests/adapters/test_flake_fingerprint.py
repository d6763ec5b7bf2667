"""The flake fingerprint: an unchanged local flake costs no `nix flake metadata`, a changed
one always gets its new narHash (and so a new evaluation), and a tree changed too recently
to tell is never trusted."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from reconcile.adapters import nix

OLD_NS = 1_000_000_000_000_000_000  # 2001: far outside the racy window


def tree(tmp_path: Path) -> Path:
    flake = tmp_path / "flake"
    (flake / "sub").mkdir(parents=True)
    (flake / "flake.nix").write_text("{ outputs = _: {}; }\n")
    (flake / "sub" / "systems.nix").write_text('{ a = "one"; }\n')
    (flake / "link").symlink_to("sub")
    for path in (flake / "flake.nix", flake / "sub" / "systems.nix", flake / "sub", flake):
        os.utime(path, ns=(OLD_NS, OLD_NS))
    os.utime(flake / "link", ns=(OLD_NS, OLD_NS), follow_symlinks=False)
    return flake


def test_only_a_plain_local_path_flake_has_one(tmp_path: Path) -> None:
    flake = tree(tmp_path)
    assert nix.flake_fingerprint(str(flake)) is None  # not path: (a git flake: Nix decides)
    assert nix.flake_fingerprint("github:o/r") is None
    assert nix.flake_fingerprint(f"path:{flake}?dir=sub") is None
    assert nix.flake_fingerprint(f"path:{tmp_path / 'missing'}") is None


def test_a_tree_changed_just_now_is_not_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flake = tree(tmp_path)
    monkeypatch.setattr(nix, "RACY_NS", 200_000_000)  # 0.2 s, in place of 3 s
    time.sleep(0.3)
    assert nix.flake_fingerprint(f"path:{flake}") is not None
    (flake / "sub" / "systems.nix").write_text('{ a = "two"; }\n')  # its ctime: now
    assert nix.flake_fingerprint(f"path:{flake}") is None


def test_any_change_changes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flake = tree(tmp_path)
    monkeypatch.setattr(nix, "RACY_NS", 0)  # ctime cannot be set back: trust fresh times here
    before = nix.flake_fingerprint(f"path:{flake}")
    assert before is not None and nix.flake_fingerprint(f"path:{flake}") == before
    target = flake / "sub" / "systems.nix"
    target.write_text('{ a = "two"; }\n')  # the same size, mtime set back: ctime still moves
    os.utime(target, ns=(OLD_NS, OLD_NS))
    assert nix.flake_fingerprint(f"path:{flake}") not in (None, before)


def test_resolving_asks_nix_only_when_the_tree_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flake = tree(tmp_path)
    monkeypatch.setattr(nix, "RACY_NS", 0)  # the tree's ctimes are now: trust them here
    ref = f"path:{flake}"
    asked: list[str] = []
    evaluated: list[str] = []

    def narhash(f: str) -> str:
        asked.append(f)
        data = (flake / "sub" / "systems.nix").read_bytes()
        return "sha256-" + hashlib.sha256(data).hexdigest()

    def evaluate(installables: list[str], _timeout: float) -> dict[str, str]:
        evaluated.extend(installables)
        data = (flake / "sub" / "systems.nix").read_bytes()
        digest = hashlib.sha256(data).hexdigest()[:32].translate(str.maketrans("eotu", "abcd"))
        return {i: f"/nix/store/{digest}-sys" for i in installables}

    monkeypatch.setattr(nix, "flake_narhash", narhash)
    monkeypatch.setattr(nix, "evaluate", evaluate)
    cache = nix.EvalCache(tmp_path / "state" / "eval-cache.json")
    wanted = [f"{ref}#a"]
    first = nix.resolve_systems(ref, wanted, cache, 10)
    assert len(asked) == 1 and evaluated == wanted  # metadata, then the evaluation
    asked.clear()
    evaluated.clear()
    assert nix.resolve_systems(ref, wanted, cache, 10) == first
    assert asked == [] and evaluated == []  # neither metadata nor evaluation
    (flake / "sub" / "systems.nix").write_text('{ a = "two"; }\n')  # the same size
    os.utime(flake / "sub" / "systems.nix", ns=(OLD_NS, OLD_NS))  # only its ctime moves
    again = nix.resolve_systems(ref, wanted, cache, 10)
    assert asked and evaluated == wanted and again != first
