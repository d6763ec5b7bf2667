"""How far a long step has got, from the code doing it to whoever shows it.

An adapter in the middle of a long step (make compiling a kernel) calls `report("1250
objects")`; the executor says, around each action it runs, where that goes (`reporting`),
and the CLI's display shows it beside the step. Outside a `reporting` block a report goes
nowhere, so adapters report without knowing who listens, or whether anyone does. The sink is
a context variable: each worker thread runs one action at a time, and reports come from the
thread that runs it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

_sink: ContextVar[Callable[[str], None] | None] = ContextVar("reconcile_progress", default=None)


def report(detail: str) -> None:
    """Say how far the current step has got (a few words: "1250 objects")."""
    sink = _sink.get()
    if sink is not None:
        sink(detail)


@contextlib.contextmanager
def reporting(sink: Callable[[str], None]) -> Iterator[None]:
    """Send this thread's reports to `sink` while the block runs."""
    token = _sink.set(sink)
    try:
        yield
    finally:
        _sink.reset(token)
