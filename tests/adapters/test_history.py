"""The run history on real SQLite files: migration, damage, locking, since-when, concurrency."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconcile.adapters.history import (
    MIGRATIONS,
    SCHEMA_VERSION,
    DriftObservation,
    History,
    HistoryError,
    _statements,
)
from reconcile.core.errors import ReconcileError


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "history.sqlite"


@pytest.fixture
def history(path: Path) -> Iterator[History]:
    with History.open(path) as opened:
        yield opened


def record(history: History, kind: str = "drift", started: float = 100.0, **summary: object) -> int:
    return history.record_run(kind, started, started + 1, "ok", 0, summary=dict(summary))


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def old_database(path: Path, version: int) -> None:
    """A file as an older reconcile left it: the first `version` migrations applied."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    for script in MIGRATIONS[:version]:
        for statement in _statements(script):
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.close()


def filled(path: Path) -> None:
    """A history of some pages, all in the main file (no WAL to hide damage in)."""
    with History.open(path) as history:
        for n in range(24):
            record(history, started=float(n), payload="x" * 1000)
        history._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert path.stat().st_size >= 8 * 4096


def drifted(name: str, field: str, desired: str, observed: str) -> DriftObservation:
    return DriftObservation("guest", name, field, desired, observed)


# Opening and migrating


def test_open_creates_directory_and_file_and_migrates_idempotently(path: Path) -> None:
    with History.open(path) as history:
        run_id = record(history, changes=2)
    assert path.is_file()
    assert user_version(path) == SCHEMA_VERSION
    with History.open(path) as history:
        assert user_version(path) == SCHEMA_VERSION
        [run] = history.recent_runs()
    assert (run.id, run.summary) == (run_id, {"changes": 2})
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


@pytest.mark.parametrize("version", range(SCHEMA_VERSION))
def test_an_older_database_is_migrated_keeping_its_runs(path: Path, version: int) -> None:
    old_database(path, version)
    if version >= 1:  # runs exist from the first migration on
        conn = sqlite3.connect(path)
        with conn:
            conn.execute(
                "INSERT INTO runs (kind, started, finished, outcome, exit_code, summary)"
                " VALUES ('apply', 5.0, 6.0, 'ok', 0, '{\"old\": true}')"
            )
        conn.close()
    with History.open(path) as history:
        assert user_version(path) == SCHEMA_VERSION
        runs = history.recent_runs()
        assert [run.summary for run in runs] == ([{"old": True}] if version >= 1 else [])
        # Every table works after migrating.
        history.update_drift(record(history), 10.0, [drifted("web", "memory", "2GiB", "1GiB")])
        history.set_state("last-applied", "abc")
        assert history.get_state("last-applied") == "abc"


def test_a_database_from_a_newer_reconcile_is_refused(path: Path) -> None:
    old_database(path, SCHEMA_VERSION)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(ReconcileError, match="newer than this reconcile") as info:
        History.open(path)
    assert str(path) in info.value.message


def test_concurrent_first_opens_both_migrate_safely(path: Path) -> None:
    errors: list[BaseException] = []

    def open_and_record() -> None:
        try:
            with History.open(path) as history:
                record(history)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_and_record) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with History.open(path) as history:
        assert len(history.recent_runs()) == 4


# Damage and locking


def test_a_file_of_random_bytes_is_corrupt_with_a_hint(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(os.urandom(8192))
    with pytest.raises(HistoryError) as info:
        History.open(path)
    assert str(path) in info.value.message
    assert "corrupt" in info.value.message
    assert info.value.hint is not None
    assert "move it aside" in info.value.hint
    assert "only past runs' records are lost" in info.value.hint


@pytest.mark.parametrize("keep", [100, 4096, 0.5])
def test_a_truncated_database_is_corrupt(path: Path, keep: float) -> None:
    filled(path)
    data = path.read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else keep
    assert 0 < cut < len(data)
    path.write_bytes(data[:cut])
    with pytest.raises(HistoryError, match="is corrupt") as info:
        History.open(path)
    assert str(path) in info.value.message
    assert info.value.hint is not None and "move it aside" in info.value.hint


def test_damage_inside_the_file_is_found_on_open(path: Path) -> None:
    filled(path)
    size = path.stat().st_size
    with path.open("r+b") as handle:  # pages lost to a crash: same size, zeros inside
        handle.seek(size // 2)
        handle.write(bytes(size - size // 2))
    with pytest.raises(HistoryError, match="is corrupt"):
        History.open(path)


@pytest.fixture
def held(path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection (another reconcile run) holding the write lock."""
    History.open(path).close()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    yield other
    other.execute("ROLLBACK")
    other.close()


def test_a_write_while_locked_says_so_after_the_busy_timeout(
    path: Path, held: sqlite3.Connection
) -> None:
    with History.open(path, busy_timeout_s=0.1) as history:
        assert history.recent_runs() == []  # WAL: reading beside a writer is fine
        started = time.monotonic()
        with pytest.raises(HistoryError) as info:
            record(history)
        assert time.monotonic() - started >= 0.08
        assert str(path) in info.value.message
        assert "locked" in info.value.message
        assert "another reconcile run" in info.value.message
        assert info.value.hint is not None
        for write in (
            lambda: history.set_state("k", "v"),
            lambda: history.update_drift(1, 1.0, []),
        ):
            with pytest.raises(HistoryError, match="locked"):
                write()
    held.execute("ROLLBACK")
    held.execute("BEGIN")  # for the fixture's ROLLBACK
    with History.open(path, busy_timeout_s=0.2) as history:
        record(history)  # the lock released, recording works again
        assert len(history.recent_runs()) == 1


def test_a_migration_while_locked_says_so(path: Path) -> None:
    path.parent.mkdir(parents=True)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # a fresh file: rollback journal, readers wait too
    try:
        with pytest.raises(HistoryError, match="is locked: another reconcile run"):
            History.open(path, busy_timeout_s=0.1)
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_a_failed_record_rolls_back_and_raises(history: History) -> None:
    with pytest.raises(TypeError):
        history.record_run("apply", 1.0, 2.0, "ok", 0, summary={"bad": object()})
    with pytest.raises(ValueError, match="unknown run kind"):
        history.record_run("deploy", 1.0, 2.0, "ok", 0, summary={})
    assert history.recent_runs() == []
    assert not history._conn.in_transaction
    record(history)
    assert len(history.recent_runs()) == 1


# Runs


def test_recent_runs_newest_first_with_limit_and_kind(history: History) -> None:
    ids = {}
    for started, kind in [(30.0, "apply"), (10.0, "drift"), (20.0, "apply"), (40.0, "gitops")]:
        ids[started] = history.record_run(
            kind,
            started,
            started + 5,
            "failed" if kind == "gitops" else "ok",
            1 if kind == "gitops" else 0,
            manifest_digest=f"sha256:{started:g}",
            commit="c0ffee" if kind == "gitops" else "",
            summary={"changes": int(started)},
        )
    assert [run.started for run in history.recent_runs()] == [40.0, 30.0, 20.0, 10.0]
    assert [run.started for run in history.recent_runs(limit=2)] == [40.0, 30.0]
    assert history.recent_runs(limit=0) == []
    assert [run.id for run in history.recent_runs(kind="apply")] == [ids[30.0], ids[20.0]]
    assert history.recent_runs(kind="plan") == []
    newest = history.recent_runs(limit=1)[0]
    assert newest.kind == "gitops"
    assert (newest.outcome, newest.exit_code, newest.commit) == ("failed", 1, "c0ffee")
    assert (newest.manifest_digest, newest.summary) == ("sha256:40", {"changes": 40})
    assert newest.duration_s == 5.0


def test_runs_starting_at_the_same_time_order_by_id(history: History) -> None:
    first, second = record(history, started=5.0), record(history, started=5.0)
    assert [run.id for run in history.recent_runs()] == [second, first]


def test_concurrent_writers_from_two_threads_are_all_recorded(path: Path) -> None:
    History.open(path).close()
    per_thread = 25
    errors: list[BaseException] = []

    def writer(tag: str) -> None:
        try:
            with History.open(path) as history:
                for n in range(per_thread):
                    history.record_run("apply", float(n), float(n), "ok", 0, summary={"tag": tag})
                    history.set_state(f"last-{tag}", str(n))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(tag,)) for tag in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with History.open(path) as history:
        runs = history.recent_runs(limit=1000)
        assert sorted(run.summary["tag"] for run in runs) == ["a"] * per_thread + ["b"] * per_thread
        assert history.get_state("last-a") == history.get_state("last-b") == str(per_thread - 1)


def test_one_history_shared_by_threads(history: History) -> None:
    def writer() -> None:
        for n in range(20):
            record(history, started=float(n))

    threads = [threading.Thread(target=writer) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(history.recent_runs(limit=100)) == 60


# Drift since-when


def test_drift_since_when_over_several_runs(history: History) -> None:
    mem = ("guest", "web", "memory")
    cpus = ("guest", "web", "vcpus")
    disk = ("host", "nas", "system")
    first = record(history, started=100.0)
    assert history.update_drift(
        first,
        100.0,
        [
            drifted("web", "memory", "2GiB", "1GiB"),
            drifted("web", "vcpus", "2", "1"),
            DriftObservation("host", "nas", "system", "/nix/store/a", "/nix/store/b"),
        ],
    ) == {mem: 100.0, cpus: 100.0, disk: 100.0}

    # Same values: the first-seen time stays. Different values: the clock restarts.
    second = record(history, started=200.0)
    assert history.update_drift(
        second,
        200.0,
        [
            drifted("web", "memory", "2GiB", "1GiB"),
            drifted("web", "vcpus", "4", "1"),
            DriftObservation("host", "nas", "system", "/nix/store/a", "/nix/store/b"),
        ],
    ) == {mem: 100.0, cpus: 200.0, disk: 100.0}

    # No longer drifted: forgotten, and drifting again later starts afresh.
    third = record(history, started=300.0)
    assert history.update_drift(third, 300.0, [drifted("web", "vcpus", "4", "1")]) == {cpus: 200.0}
    assert history.drift_since() == {cpus: 200.0}
    fourth = record(history, started=400.0)
    assert history.update_drift(
        fourth,
        400.0,
        [drifted("web", "vcpus", "4", "1"), drifted("web", "memory", "2GiB", "1GiB")],
    ) == {cpus: 200.0, mem: 400.0}

    # Nothing drifted: everything forgotten.
    fifth = record(history, started=500.0)
    assert history.update_drift(fifth, 500.0, []) == {}
    assert history.drift_since() == {}


def test_drift_of_an_unknown_subject_is_kept(history: History) -> None:
    run = record(history)
    history.update_drift(
        run,
        100.0,
        [
            drifted("web", "memory", "2GiB", "1GiB"),
            DriftObservation("host", "nas", "system", "/nix/store/a", "/nix/store/b"),
        ],
    )
    # nas unreachable this time: its drift did not end, web's did.
    assert history.update_drift(record(history), 200.0, [], unknown=[("host", "nas")]) == {}
    assert history.drift_since() == {("host", "nas", "system"): 100.0}


def test_a_targeted_run_forgets_nothing_about_subjects_it_did_not_look_at(
    history: History,
) -> None:
    both = [
        drifted("web", "memory", "2GiB", "1GiB"),
        DriftObservation("host", "nas", "system", "/nix/store/a", "/nix/store/b"),
    ]
    history.update_drift(record(history), 100.0, both)
    # `drift --target web`: web is in sync now; nas was not looked at.
    assert history.update_drift(record(history), 200.0, [], looked_at=[("guest", "web")]) == {}
    assert history.drift_since() == {("host", "nas", "system"): 100.0}
    # A whole run that sees nas in sync forgets it too.
    assert history.update_drift(record(history), 300.0, []) == {}
    assert history.drift_since() == {}


def test_drift_since_survives_reopening(path: Path) -> None:
    with History.open(path) as history:
        history.update_drift(record(history), 100.0, [drifted("web", "memory", "2", "1")])
    with History.open(path) as history:
        assert history.drift_since() == {("guest", "web", "memory"): 100.0}
        assert history.update_drift(
            record(history), 150.0, [drifted("web", "memory", "2", "1")]
        ) == {("guest", "web", "memory"): 100.0}


def test_contradictory_observations_are_refused(history: History) -> None:
    run = record(history)
    same = drifted("web", "memory", "2", "1")
    assert history.update_drift(run, 1.0, [same, same]) == {("guest", "web", "memory"): 1.0}
    with pytest.raises(ValueError, match="two different observations"):
        history.update_drift(run, 2.0, [same, drifted("web", "memory", "2", "3")])
    with pytest.raises(ValueError, match="unknown subject kind"):
        history.update_drift(run, 2.0, [DriftObservation("disk", "x", "f", "a", "b")])
    assert history.drift_since() == {("guest", "web", "memory"): 1.0}


# GitOps state


def test_state_set_get_overwrite_and_remove(path: Path) -> None:
    with History.open(path) as history:
        assert history.get_state("last-applied-commit") is None
        history.set_state("last-applied-commit", "aaa")
        history.set_state("last-applied-commit", "bbb")
        history.set_state("last-failed-commit", "ccc")
    with History.open(path) as history:
        assert history.get_state("last-applied-commit") == "bbb"
        history.set_state("last-failed-commit", None)
        assert history.get_state("last-failed-commit") is None
