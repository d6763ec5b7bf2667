"""One error root. Library code raises; only the CLI prints and exits."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from reconcile.core.exits import ExitCode


class ReconcileError(Exception):
    """An expected failure: shown as `error: message` plus a hint, never a traceback."""

    exit_code = ExitCode.ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a manifest, located as precisely as we can."""

    file: str
    line: int | None
    column: int | None
    path: str
    message: str
    hint: str | None = None

    def render(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        head = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        return head + (f"\n  hint: {self.hint}" if self.hint else "")


class ManifestError(ReconcileError):
    """The manifest is invalid; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        count = len(problems)
        super().__init__(f"invalid manifest ({count} problem{'s' if count != 1 else ''})")
        self.problems = problems


class ProbeError(ReconcileError):
    """Observing the world failed: the subject is unknown, never absent."""


class CommandError(ReconcileError):
    """An external command failed; the message shows it copy-pasteable."""

    def __init__(
        self,
        argv: tuple[str, ...],
        returncode: int,
        output_tail: str,
        *,
        hint: str | None = None,
        retryable: bool = False,
    ) -> None:
        self.argv = argv
        self.returncode = returncode
        self.output_tail = output_tail
        self.retryable = retryable
        tail = f"\n{output_tail}" if output_tail else ""
        super().__init__(f"command failed (exit {returncode}): {shlex.join(argv)}{tail}", hint=hint)


class PlanError(ReconcileError):
    """The plan cannot be made (a cycle, an unresolvable input, a stale saved plan)."""


class RolledBackError(ReconcileError):
    """A host's activation or health checks failed; it is back on its previous system."""


class DegradedError(ReconcileError):
    """The action took effect but left the subject degraded (switch-to-configuration's 4).

    Raised by a performer to say "done, degraded": its dependents still run.
    """


class LockError(ReconcileError):
    """Another run holds the lab's lock."""
