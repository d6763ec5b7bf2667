"""A kernel build's progress: make's objects counted, and a percentage where an earlier
build of the same kernel recorded its count (adapters/kernel_build.MakeProgress)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconcile import progress
from reconcile.adapters.kernel_build import OBJECTS, KernelJob, MakeProgress, expected_objects
from reconcile.core.layout import StateLayout
from tests.adapters.test_kernel_tree import _spec

KEY_A, KEY_B, KEY_C = "a" * 24, "b" * 24, "c" * 24


def job(tmp_path: Path, key: str, name: str = "tiny") -> KernelJob:
    made = KernelJob(name, _spec(tmp_path), key, StateLayout(tmp_path / "state"))
    made.directory.mkdir(parents=True, exist_ok=True)
    return made


def feed(shown: MakeProgress, objects: int) -> None:
    for i in range(objects):
        shown(f"  CC      kernel/f{i}.o")
        shown("  some other line make prints")


@pytest.fixture
def said(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    reports: list[str] = []
    monkeypatch.setattr(progress, "report", reports.append)
    return reports


def test_a_first_build_counts_and_records(tmp_path: Path, said: list[str]) -> None:
    first = job(tmp_path, KEY_A)
    shown = MakeProgress(first, "bzImage")
    feed(shown, 25)
    assert said == ["make bzImage", "make bzImage: 10 objects", "make bzImage: 20 objects"]
    shown.record()
    assert json.loads((first.directory / OBJECTS).read_text()) == {"bzImage": 25}


def test_the_next_build_of_the_kernel_shows_a_percentage(tmp_path: Path, said: list[str]) -> None:
    earlier = job(tmp_path, KEY_A)
    (earlier.directory / OBJECTS).write_text('{"bzImage": 40, "modules": 7}')
    other = job(tmp_path, KEY_C, name="tiny-debug")  # another kernel, its name this one's and more
    (other.directory / OBJECTS).write_text('{"bzImage": 9000}')
    now = job(tmp_path, KEY_B)
    assert expected_objects(now, "bzImage") == 40
    assert expected_objects(now, "modules") == 7
    shown = MakeProgress(now, "bzImage")
    feed(shown, 50)  # more than the estimate: never past 99 % before make is done
    assert said[1:] == [
        "make bzImage: 10 of ≈40 objects (25%)",
        "make bzImage: 20 of ≈40 objects (50%)",
        "make bzImage: 30 of ≈40 objects (75%)",
        "make bzImage: 40 of ≈40 objects (99%)",
        "make bzImage: 50 of ≈40 objects (99%)",
    ]


def test_a_build_is_not_its_own_estimate_and_garbage_is_ignored(tmp_path: Path) -> None:
    now = job(tmp_path, KEY_B)
    (now.directory / OBJECTS).write_text('{"bzImage": 40}')
    broken = job(tmp_path, KEY_A)
    (broken.directory / OBJECTS).write_text("not json")
    assert expected_objects(now, "bzImage") is None
