"""Read-only views, on the real kernel: read-only from the moment they exist, whatever kills.

These mount for real (root, Linux >= 5.12 for mount_setattr) under pytest's tmp_path, and
unmount what they made (remove_tree unmounts first).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from reconcile.adapters import views
from reconcile.core.errors import ReconcileError
from reconcile.core.guests.observed import ViewState
from reconcile.core.guests.shares import View
from tests.conftest import ROOT
from tests.support.stack import mounts_below, remove_tree, writable_mounts_below

pytestmark = pytest.mark.real


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "source").mkdir()
    (tmp_path / "source" / "a-path").write_text("x")
    yield tmp_path
    remove_tree(tmp_path)
    assert not tmp_path.exists()


def state(view: View) -> ViewState:
    return views.observe([view])[view]


def test_a_view_is_read_only_from_the_host_and_shows_later_files(root: Path) -> None:
    view = View(root / "state" / "views" / "v", root / "source")
    assert state(view) is ViewState.MISSING
    assert not view.path.exists()  # observing makes nothing
    views.ensure(root / "state" / "views.lock", [view])
    views.ensure(root / "state" / "views.lock", [view])  # idempotent
    assert state(view) is ViewState.READ_ONLY
    assert mounts_below(root) == [str(view.path)]
    assert (view.path / "a-path").read_text() == "x"
    (root / "source" / "built-later").write_text("y")
    assert (view.path / "built-later").read_text() == "y"
    with pytest.raises(OSError, match="Read-only file system"):
        (view.path / "intruder").write_text("z")
    with pytest.raises(OSError, match="Read-only file system"):
        (view.path / "a-path").write_text("changed")
    assert (root / "source" / "a-path").read_text() == "x"


def test_parallel_ensures_make_one_read_only_mount(root: Path) -> None:
    """Guests start in parallel: stacked binds would leave a lower one behind."""
    view = View(root / "state" / "store", root / "source")
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: views.ensure(root / "state" / "views.lock", [view]), range(8)))
    assert mounts_below(root) == [str(view.path)]
    assert writable_mounts_below(root) == []


def test_a_writable_bind_left_behind_is_replaced_never_used(root: Path) -> None:
    """What an older version killed between its bind and its remount left."""
    view = View(root / "state" / "store", root / "source")
    view.path.mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(view.source), str(view.path)], check=True)
    assert writable_mounts_below(root) == [str(view.path)]  # the check sees one
    assert state(view) is ViewState.WRITABLE
    views.ensure(root / "state" / "views.lock", [view])
    assert state(view) is ViewState.READ_ONLY
    assert mounts_below(root) == [str(view.path)]
    assert writable_mounts_below(root) == []


def test_a_read_only_view_under_a_writable_one_is_replaced(root: Path) -> None:
    view = View(root / "state" / "store", root / "source")
    views.ensure(root / "state" / "views.lock", [view])
    subprocess.run(["mount", "--bind", str(view.source), str(view.path)], check=True)
    assert state(view) is ViewState.WRITABLE
    views.ensure(root / "state" / "views.lock", [view])
    assert mounts_below(root) == [str(view.path)]
    assert state(view) is ViewState.READ_ONLY


def test_a_view_of_another_directory_is_stale_and_replaced(root: Path) -> None:
    (root / "other").mkdir()
    view = View(root / "state" / "views" / "v", root / "source")
    views.ensure(root / "state" / "views.lock", [View(view.path, root / "other")])
    assert state(view) is ViewState.STALE
    views.ensure(root / "state" / "views.lock", [view])
    assert state(view) is ViewState.READ_ONLY
    assert (view.path / "a-path").read_text() == "x"
    assert mounts_below(root) == [str(view.path)]


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_a_source_that_is_not_a_directory_is_a_clear_error(root: Path, kind: str) -> None:
    source = root / "not-there"
    if kind == "file":
        source.write_text("")
    view = View(root / "state" / "views" / "v", source)
    what = "does not exist" if kind == "missing" else "is not a directory"
    with pytest.raises(ReconcileError, match=f"share source {source} {what}") as error:
        views.ensure(root / "state" / "views.lock", [view])
    assert error.value.hint
    assert mounts_below(root) == []


# Makes and unmounts one view for ever: a SIGKILL lands somewhere in that cycle.
CHILD = """
import sys
from pathlib import Path
from reconcile.adapters import views
from reconcile.core.guests.shares import View
root = Path(sys.argv[1])
view = View(root / "state" / "views" / "v", root / "source")
print("ready", flush=True)
while True:
    views.ensure(root / "state" / "views.lock", [view])
    views.unmount(view.path)
"""


def test_sigkill_anywhere_in_making_a_view_never_leaves_it_writable(root: Path) -> None:
    """A child makes and unmounts a view in a loop; it is killed after increasing delays.

    While it runs, the parent watches mountinfo: no mount under the test directory is ever
    writable, not even for the instant a two-step bind-then-remount would have.
    """
    seen_writable: list[str] = []
    cycles = 0
    for round_ in range(30):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(root)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        deadline = time.monotonic() + 0.002 + round_ * 0.003
        while time.monotonic() < deadline:
            seen_writable += writable_mounts_below(root)
            cycles += 1
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
        child.stdout.close()
        seen_writable += writable_mounts_below(root)
        assert len(mounts_below(root)) <= 1  # never two stacked
    assert seen_writable == []
    assert cycles > 30
    view = View(root / "state" / "views" / "v", root / "source")
    # whatever the last kill left, the next run is sound
    views.ensure(root / "state" / "views.lock", [view])
    assert state(view) is ViewState.READ_ONLY
