"""A world on disk for the resume test: a JSON list of the actions performed so far.

`python -m tests.orchestration.world FILE` applies `PLAN` to the world in FILE, one action
at a time, as an apply would; RECONCILE_FAULT (read by the executor) kills it part-way.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

from reconcile.core.plan.actions import Action, DestroyGuest, GuestRef, ShutdownGuest, UndefineGuest
from reconcile.core.plan.diff import Diff
from reconcile.core.plan.graph import Plan
from reconcile.orchestration.executor import Check, execute


def _ref(guest: str) -> GuestRef:
    return GuestRef(guest, "local", f"t-{guest}")


_ACTIONS: list[Action] = [
    ShutdownGuest(_ref("a"), 1.0),
    DestroyGuest(_ref("a")),
    UndefineGuest(_ref("a")),
    DestroyGuest(_ref("b")),
    UndefineGuest(_ref("b")),
]
PLAN = Plan(
    diff=Diff("t", (), ()),
    nodes={action.key: action for action in _ACTIONS},
    edges=(("a/shutdown", "a/destroy"), ("a/destroy", "a/undefine"), ("b/destroy", "b/undefine")),
    to_build=(),
)
# One worker: a/shutdown, a/destroy, a/undefine, b/destroy, b/undefine.
ORDER = PLAN.action_keys()


class WorldPerformer:
    """Performing an action records it in the world; one recorded is satisfied."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()  # one writer at a time: the world is read, then written

    def done(self) -> list[str]:
        if not self.path.exists():
            return []
        done: list[str] = json.loads(self.path.read_text())
        return done

    def check(self, action: Action) -> Check:
        return Check.SATISFIED if action.key in self.done() else Check.NEEDED

    def perform(self, action: Action) -> None:
        with self._lock:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps([*self.done(), action.key]))
            os.replace(tmp, self.path)  # a kill leaves the world before or after, never half


def main(argv: list[str]) -> int:
    results = execute(PLAN, WorldPerformer(Path(argv[1])), parallel=1)
    return 0 if all(r.outcome.ok() for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
