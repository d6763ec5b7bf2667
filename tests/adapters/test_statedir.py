"""A state directory is written into only when it is the lab's own."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reconcile.adapters import statedir
from reconcile.core.errors import ReconcileError
from reconcile.core.statedir import location_problem

MARK = ".reconcile-lab"  # pinned: a lab made by an older reconcile must still be recognised


@pytest.fixture(autouse=True)
def _fresh_claims(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statedir, "_claimed", set())


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/nix/store",
        "/nix",
        "/nix/var/nix/x",
        "/etc",
        "/etc/reconcile",
        "/usr/local/x",
        "/home",
        "/var/lib",
        "/tmp",
        "/proc/1",
        "/dev/shm/x",
        "/boot/x",
        "/var/lib/../../nix",
    ],
)
def test_dangerous_places_are_refused(path: str) -> None:
    assert location_problem(path) is not None


@pytest.mark.parametrize(
    "path", ["/var/lib/reconcile/lab", "/srv/labs/a", "/home/me/lab-state", "/tmp/x/state"]
)
def test_a_directory_of_its_own_is_fine(path: str) -> None:
    assert location_problem(path) is None


def test_an_absent_directory_is_made_and_marked(tmp_path: Path) -> None:
    state = tmp_path / "a" / "state"
    statedir.claim(state, "lab")
    assert (state / MARK).read_text() == "lab\n"
    statedir.claim(state, "lab")  # again: fine


def test_another_labs_directory_is_refused(tmp_path: Path) -> None:
    statedir.claim(tmp_path / "s", "one")
    with pytest.raises(ReconcileError, match="belongs to lab 'one', not 'two'"):
        statedir.claim(tmp_path / "s", "two")


def test_a_directory_holding_other_things_is_refused_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ReconcileError, match="not a reconcile state directory: it holds notes"):
        statedir.claim(tmp_path, "lab")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_an_older_reconciles_directory_is_adopted(tmp_path: Path) -> None:
    (tmp_path / "gcroots").mkdir()
    (tmp_path / "lock").write_text("")
    statedir.claim(tmp_path, "lab")
    assert (tmp_path / MARK).read_text() == "lab\n"


def test_a_link_into_the_store_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "state"
    link.symlink_to("/nix/store")
    with pytest.raises(ReconcileError, match="which reconcile never writes into"):
        statedir.claim(link, "lab")


def test_a_read_only_directory_is_a_clear_error(tmp_path: Path) -> None:
    state = tmp_path / "ro"
    state.mkdir()
    # root ignores permission bits: make it read-only the way root feels it, a ro bind.
    subprocess.run(["mount", "--bind", str(state), str(state)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(state)], check=True)
        with pytest.raises(ReconcileError, match=f"cannot write {state}/{MARK}"):
            statedir.claim(state, "lab")
    finally:
        subprocess.run(["umount", str(state)], check=True)
