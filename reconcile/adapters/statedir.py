"""Claiming a lab's state directory before anything writes into it.

Every command that writes (plan's caches, apply, drift's history, a GitOps cycle) claims the
directory first: it must be where a state directory may be (core/statedir.py, checked again
on the resolved path, links followed), and be the lab's own: marked with the lab's name,
or made now, or left by an older reconcile. A directory holding anything else is refused,
so `state_dir = "/home/me"` never becomes a place reconcile writes locks and GC roots.
"""

from __future__ import annotations

import threading
from pathlib import Path

from reconcile.adapters.files import read_regular, write_atomic
from reconcile.core.errors import ReconcileError
from reconcile.core.layout import StateLayout
from reconcile.core.statedir import location_problem, made_by_reconcile

_claimed: set[tuple[Path, str]] = set()
_lock = threading.Lock()


def claim(state_dir: Path, lab: str) -> None:
    """Make sure `state_dir` is lab `lab`'s own, creating and marking it when needed."""
    with _lock:
        if (state_dir, lab) in _claimed:
            return
        _claim(state_dir, lab)
        _claimed.add((state_dir, lab))


def _claim(state_dir: Path, lab: str) -> None:
    real = state_dir.resolve()
    hint = "set lab.state_dir to a directory of this lab's own (absent or empty is fine)"
    if problem := location_problem(real):
        raise ReconcileError(f"lab.state_dir {state_dir}: {problem}", hint=hint)
    mark = StateLayout(real).mark
    try:
        owner: str | None = read_regular(mark, 4096).decode(errors="replace").strip()
    except FileNotFoundError:
        owner = None
    except OSError as exc:
        raise ReconcileError(f"cannot read {mark}: {exc.strerror}", hint=hint) from None
    if owner is not None:
        if owner != lab:
            raise ReconcileError(
                f"lab.state_dir {state_dir} belongs to lab {owner!r}, not {lab!r}",
                hint="two labs cannot share a state directory (one lock, one history)",
            )
        return
    if real.exists():
        if not real.is_dir():
            raise ReconcileError(f"lab.state_dir {state_dir} is not a directory", hint=hint)
        names = {entry.name for entry in real.iterdir()}
        if names and not made_by_reconcile(names):
            shown = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
            raise ReconcileError(
                f"lab.state_dir {state_dir} is not a reconcile state directory: it holds {shown}",
                hint=hint,
            )
    try:
        real.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReconcileError(
            f"cannot create lab.state_dir {state_dir}: {exc.strerror}", hint=hint
        ) from None
    write_atomic(mark, lab + "\n")
