"""The lab's run history: one SQLite file in its state directory (`StateLayout.history`).

SQLite (not JSON files) because several readers and writers share it (a drift timer, an
apply, `reconcile history`, the GitOps loop) and each write must be all-or-nothing. WAL lets
readers run beside a writer; every write is a `BEGIN IMMEDIATE` transaction, so waiting for
another writer goes through the busy timeout instead of failing halfway. The schema migrates
itself from `PRAGMA user_version`, so an old file keeps its runs across upgrades.

Nothing here is swallowed: a corrupt, locked or unwritable file is a `HistoryError` that says
which file and what to do, and a run that cannot be recorded fails loudly rather than vanish.
Timestamps are unix seconds passed in by the caller, so the semantics test without a clock.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from reconcile.adapters.lock import flock_within
from reconcile.core.errors import ReconcileError

__all__ = [
    "KINDS",
    "DriftKey",
    "DriftObservation",
    "History",
    "HistoryError",
    "RunRecord",
]

KINDS = frozenset({"drift", "apply", "plan", "gitops"})
SUBJECT_KINDS = frozenset({"guest", "host"})
DEFAULT_BUSY_TIMEOUT_S = 5.0

DriftKey = tuple[str, str, str]
"""(subject kind, subject name, field): what a since-when timestamp is kept for."""

# Append only: a released migration never changes, because files in the field have run it.
# Migration N (1-based) takes the file from user_version N-1 to N.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        started REAL NOT NULL,
        finished REAL NOT NULL,
        outcome TEXT NOT NULL,
        exit_code INTEGER NOT NULL,
        manifest_digest TEXT NOT NULL DEFAULT '',
        commit_id TEXT NOT NULL DEFAULT '',
        summary TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX runs_by_start ON runs (started, id);
    CREATE INDEX runs_by_kind ON runs (kind, started, id);
    CREATE TABLE state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    """,
    """
    CREATE TABLE drift (
        subject_kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        field TEXT NOT NULL,
        desired TEXT NOT NULL,
        observed TEXT NOT NULL,
        since REAL NOT NULL,
        since_run INTEGER REFERENCES runs (id) ON DELETE SET NULL,
        last_run INTEGER REFERENCES runs (id) ON DELETE SET NULL,
        PRIMARY KEY (subject_kind, subject, field)
    ) WITHOUT ROWID;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class HistoryError(ReconcileError):
    """The run history cannot be read or written (corrupt, locked, unwritable)."""


@dataclass(frozen=True)
class RunRecord:
    """One recorded run, as `reconcile history` lists it."""

    id: int
    kind: str
    started: float
    finished: float
    outcome: str
    exit_code: int
    manifest_digest: str
    commit: str
    summary: dict[str, Any] = field(hash=False)

    @property
    def duration_s(self) -> float:
        return self.finished - self.started


@dataclass(frozen=True)
class DriftObservation:
    """One field of one subject that differs from the manifest, as a drift run saw it."""

    subject_kind: str  # "guest" | "host"
    subject: str
    field: str
    desired: str
    observed: str

    @property
    def key(self) -> DriftKey:
        return (self.subject_kind, self.subject, self.field)


class History:
    """An open run history. One connection, serialised by a lock so threads may share it."""

    def __init__(self, conn: sqlite3.Connection, path: Path, busy_timeout_s: float) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self._conn = conn
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> History:
        """Open (creating file and directory) and migrate; a damaged file is refused here.

        `PRAGMA quick_check` reads the whole file, which is cheap at history sizes (tens of
        milliseconds for megabytes) and means damage is reported before a run starts rather
        than when its record is written at the end.
        """
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HistoryError(
                f"cannot create the state directory {path.parent}: {exc.strerror}",
                hint="check that the state directory's parent exists and is writable",
            ) from None
        with _translated(path, busy_timeout_s):
            conn = sqlite3.connect(
                path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
        history = cls(conn, path, busy_timeout_s)
        try:
            # Opens are serialised by a side lock file: switching a new file to WAL needs
            # an exclusive lock, and SQLite does not always wait for it (SQLITE_BUSY at once
            # when two processes create the file together).
            with _opening(path, busy_timeout_s), history._errors():
                history._configure()
                history._check_integrity()
                history._migrate()
        except BaseException:
            conn.close()
            raise
        return history

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> History:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # Runs

    def record_run(
        self,
        kind: str,
        started: float,
        finished: float,
        outcome: str,
        exit_code: int,
        *,
        manifest_digest: str = "",
        commit: str = "",
        summary: Mapping[str, Any],
    ) -> int:
        """Record a finished run and return its id; any failure raises, never drops it."""
        if kind not in KINDS:
            raise ValueError(f"unknown run kind {kind!r}; one of {sorted(KINDS)}")
        encoded = json.dumps(dict(summary), sort_keys=True, separators=(",", ":"))
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO runs (kind, started, finished, outcome, exit_code,"
                " manifest_digest, commit_id, summary) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (kind, started, finished, outcome, exit_code, manifest_digest, commit, encoded),
            )
            run_id = cursor.lastrowid
        if run_id is None:  # pragma: no cover - an INSERT into a rowid table always sets it
            raise HistoryError(f"the run history {self.path} did not record the run")
        return run_id

    def recent_runs(self, limit: int = 20, kind: str | None = None) -> list[RunRecord]:
        """The newest `limit` runs (by start time, then id), optionally of one kind."""
        if limit < 0:
            raise ValueError(f"limit must not be negative, got {limit}")
        sql = (
            "SELECT id, kind, started, finished, outcome, exit_code, manifest_digest, commit_id,"
            " summary FROM runs WHERE ?1 IS NULL OR kind = ?1"
            " ORDER BY started DESC, id DESC LIMIT ?2"
        )
        with self._read() as conn:
            rows = conn.execute(sql, (kind, limit)).fetchall()
        return [
            RunRecord(
                id=row[0],
                kind=row[1],
                started=row[2],
                finished=row[3],
                outcome=row[4],
                exit_code=row[5],
                manifest_digest=row[6],
                commit=row[7],
                summary=json.loads(row[8]),
            )
            for row in rows
        ]

    # Drift since-when

    def update_drift(
        self,
        run_id: int,
        now: float,
        items: Iterable[DriftObservation],
        *,
        unknown: Iterable[tuple[str, str]] = (),
        looked_at: Iterable[tuple[str, str]] | None = None,
    ) -> dict[DriftKey, float]:
        """Record what a drift run saw; return since when each current item has drifted.

        An item keeps its first-seen time while its desired and observed values stay the
        same; different values mean a different drift, so its clock restarts at `now`.
        Entries not in `items` are no longer drifted and are forgotten, except those of
        subjects in `unknown` (kind, name): their probe failed, so their drift is not known
        to have ended and their entries stay as they were. A run limited to some subjects
        (`looked_at`, kind and name) forgets nothing about the others.
        """
        current = _by_key(items)
        kept_subjects = set(unknown)
        since: dict[DriftKey, float] = {}
        with self._write() as conn:
            stored = {
                (row[0], row[1], row[2]): (row[3], row[4], row[5])
                for row in conn.execute(
                    "SELECT subject_kind, subject, field, desired, observed, since FROM drift"
                )
            }
            for key, item in current.items():
                previous = stored.get(key)
                if previous is not None and previous[:2] == (item.desired, item.observed):
                    since[key] = previous[2]
                    conn.execute(
                        "UPDATE drift SET last_run = ?"
                        " WHERE subject_kind = ? AND subject = ? AND field = ?",
                        (run_id, *key),
                    )
                else:
                    since[key] = now
                    conn.execute(
                        "INSERT OR REPLACE INTO drift (subject_kind, subject, field, desired,"
                        " observed, since, since_run, last_run) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (*key, item.desired, item.observed, now, run_id, run_id),
                    )
            scope = None if looked_at is None else set(looked_at)
            for key in stored.keys() - current.keys():
                if key[:2] not in kept_subjects and (scope is None or key[:2] in scope):
                    conn.execute(
                        "DELETE FROM drift WHERE subject_kind = ? AND subject = ? AND field = ?",
                        key,
                    )
        return since

    def drift_since(self) -> dict[DriftKey, float]:
        """The stored since-when of every drift last seen, without changing anything."""
        with self._read() as conn:
            rows = conn.execute("SELECT subject_kind, subject, field, since FROM drift").fetchall()
        return {(row[0], row[1], row[2]): row[3] for row in rows}

    # GitOps state

    def get_state(self, key: str) -> str | None:
        """A small persistent value (the last applied commit, the last failed one)."""
        with self._read() as conn:
            row = conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_state(self, key: str, value: str | None) -> None:
        """Set `key` to `value`; None removes it."""
        with self._write() as conn:
            if value is None:
                conn.execute("DELETE FROM state WHERE key = ?", (key,))
            else:
                conn.execute(
                    "INSERT INTO state (key, value) VALUES (?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )

    # Plumbing

    def _configure(self) -> None:
        # WAL: readers never wait for a writer. FULL: a committed run survives a power cut.
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = FULL")
        self._conn.execute("PRAGMA foreign_keys = ON")

    def _check_integrity(self) -> None:
        rows = self._conn.execute("PRAGMA quick_check").fetchall()
        if [tuple(row) for row in rows] != [("ok",)]:
            detail = "; ".join(str(row[0]) for row in rows[:3])
            raise _corrupt(self.path, detail)

    def _migrate(self) -> None:
        if self._user_version() == SCHEMA_VERSION:
            return
        with self._write() as conn:
            # Re-read under the write lock: another process may have migrated meanwhile.
            version = self._user_version()
            if version > SCHEMA_VERSION:
                raise HistoryError(
                    f"the run history {self.path} has schema version {version}, newer than"
                    f" this reconcile knows ({SCHEMA_VERSION})",
                    hint="use the newer reconcile that wrote it, or move the file aside"
                    " to start a fresh history",
                )
            for number in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _statements(MIGRATIONS[number - 1]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number:d}")

    def _user_version(self) -> int:
        row = self._conn.execute("PRAGMA user_version").fetchone()
        return int(row[0])

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        with _translated(self.path, self.busy_timeout_s):
            yield

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._errors():
            yield self._conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; IMMEDIATE takes the write lock up front (or waits for it)."""
        with self._lock, self._errors():
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise


@contextlib.contextmanager
def _opening(path: Path, timeout_s: float) -> Iterator[None]:
    """An exclusive flock on `<path>.lock` for the time of an open (waits `timeout_s`)."""
    lock = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise HistoryError(
            f"cannot open the run history {path}: cannot create {lock}: {exc.strerror}",
            hint=_WRITABLE_HINT.format(directory=path.parent),
        ) from None
    try:
        if not flock_within(fd, timeout_s, poll_s=0.01):
            raise HistoryError(
                f"the run history {path} is being opened by another reconcile run "
                f"(waited {timeout_s:g}s)",
                hint="wait for it to finish, then run this again",
            )
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


@contextlib.contextmanager
def _translated(path: Path, busy_timeout_s: float) -> Iterator[None]:
    """SQLite's failures as HistoryErrors naming the file; programming errors pass through."""
    try:
        yield
    except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError):
        raise
    except sqlite3.DatabaseError as exc:
        code = exc.sqlite_errorcode & 0xFF
        if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            raise HistoryError(
                f"the run history {path} is locked: another reconcile run is writing to it"
                f" (waited {busy_timeout_s:g}s)",
                hint="wait for that run to finish and retry; if no reconcile is running, find"
                f" what holds the file open with `fuser {path}`",
            ) from None
        if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            raise _corrupt(path, str(exc)) from None
        if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_CANTOPEN):
            raise HistoryError(
                f"cannot write the run history {path}: {exc}",
                hint=_WRITABLE_HINT.format(directory=path.parent),
            ) from None
        if code == sqlite3.SQLITE_FULL:
            raise HistoryError(
                f"cannot write the run history {path}: the file system is full ({exc})",
                hint=f"free space where the state directory {path.parent} lives (`df`), then rerun",
            ) from None
        raise HistoryError(
            f"the run history {path} failed: {exc}",
            hint="check free space and the filesystem holding the state directory",
        ) from None


_WRITABLE_HINT = (
    "the state directory {directory} and its files must be writable by this user: is its "
    "file system read-only (`findmnt -T {directory}`) or full (`df`), or the directory "
    "owned by another user?"
)


def _corrupt(path: Path, detail: str) -> HistoryError:
    return HistoryError(
        f"the run history {path} is corrupt: {detail}",
        hint=f"move it aside (with any {path.name}-wal and {path.name}-shm next to it) and"
        " rerun; a fresh history is started and only past runs' records are lost, nothing"
        " in the lab or the rest of the state directory",
    )


def _by_key(items: Iterable[DriftObservation]) -> dict[DriftKey, DriftObservation]:
    current: dict[DriftKey, DriftObservation] = {}
    for item in items:
        if item.subject_kind not in SUBJECT_KINDS:
            raise ValueError(f"unknown subject kind {item.subject_kind!r} in {item}")
        seen = current.setdefault(item.key, item)
        if seen != item:
            raise ValueError(f"two different observations of {item.key}: {seen} and {item}")
    return current


def _statements(script: str) -> Iterator[str]:
    """A migration script's statements, split where SQLite itself says one is complete.

    Not `executescript`: it commits first, and a migration must run inside the
    transaction that also sets user_version.
    """
    pending = ""
    for part in script.split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip() != ";":
                yield pending.strip()
            pending = ""
    if pending.strip(" \n\t;"):
        raise ValueError(f"incomplete statement in migration: {pending!r}")
