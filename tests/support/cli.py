"""Running the real CLI as a user would: a new process, its output captured."""

from __future__ import annotations

import os
import subprocess
import sys


def reconcile(
    *args: str, env: dict[str, str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """`python -m reconcile ARGS`; never raises on a non-zero exit (tests check it)."""
    return subprocess.run(
        [sys.executable, "-m", "reconcile", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )
