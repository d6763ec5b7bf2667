"""Polling until something holds, for real tests (never a fixed sleep in place of it)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(what: str, ok: Callable[[], object], timeout_s: float, poll_s: float = 0.2) -> None:
    """Return once `ok()` is true; fail the test with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not ok():
        assert time.monotonic() < deadline, f"{what}: not after {timeout_s}s"
        time.sleep(poll_s)
