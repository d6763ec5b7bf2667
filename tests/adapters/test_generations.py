"""Guests' generations and pins (adapters/generations.py) on plain files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconcile.adapters import generations, nix
from reconcile.core.errors import ReconcileError
from reconcile.core.layout import StateLayout

STORE = "/nix/store/" + "a" * 32


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StateLayout:
    monkeypatch.setattr(nix, "GCROOTS_AUTO", tmp_path / "auto")  # not the machine's own
    return StateLayout(tmp_path / "state")


def test_each_new_system_is_a_generation_and_only_the_newest_keep_roots(
    layout: StateLayout, tmp_path: Path
) -> None:
    for n in (1, 1, 2, 3):  # the same system twice is one generation
        generations.record(layout, "web", f"{STORE}-sys{n}", keep=2)
    kept = generations.read(layout, "web")
    assert [(g.number, g.toplevel[-4:]) for g in kept] == [(2, "sys2"), (3, "sys3")]
    roots = layout.generations / "web"
    assert {p.name: os.readlink(p) for p in roots.iterdir()} == {
        "2": f"{STORE}-sys2",
        "3": f"{STORE}-sys3",
    }
    registered = {os.readlink(p) for p in (tmp_path / "auto").iterdir()}
    assert registered == {str(roots / "2"), str(roots / "3")}  # 1 released


def test_going_back_to_an_old_system_is_a_new_generation(layout: StateLayout) -> None:
    for n in (1, 2, 1):
        generations.record(layout, "web", f"{STORE}-sys{n}", keep=5)
    assert [g.number for g in generations.read(layout, "web")] == [1, 2, 3]


def test_pins_and_forgetting(layout: StateLayout, tmp_path: Path) -> None:
    generations.record(layout, "web", f"{STORE}-sys1", keep=5)
    generations.pin(layout, "web", f"{STORE}-sys1")
    assert generations.pins(layout) == {"web": f"{STORE}-sys1"}
    generations.forget(layout, "web")
    assert generations.read(layout, "web") == [] and generations.pins(layout) == {}
    assert not layout.pins.exists() and not any((tmp_path / "auto").iterdir())
    assert generations.unpin(layout, "web") is False


def test_damaged_records_are_clear_errors(layout: StateLayout) -> None:
    layout.generations.mkdir(parents=True)
    (layout.generations / "web.json").write_text("[{")
    with pytest.raises(ReconcileError, match="unreadable generations"):
        generations.read(layout, "web")
    layout.pins.write_text('{"web": 1}')
    with pytest.raises(ReconcileError, match="not a map"):
        generations.pins(layout)
