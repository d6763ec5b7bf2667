"""Exit codes, Terraform's where Terraform has one (README: "Exit codes")."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What a command's exit status means; `str()` and `format()` give the number."""

    OK = 0  # success; no changes; in sync
    ERROR = 1  # an error, a failed action, something that could not be observed
    CHANGES = 2  # changes present (plan --detailed-exitcode), drift
    DEGRADED = 3  # apply done, but a host reported failed units
    ROLLED_BACK = 4  # a host failed activation or health checks and was rolled back
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as a shell reports it)
