"""The one chokepoint for running commands. Nothing else imports subprocess.

Commands are values (argv tuples) built by pure functions elsewhere; this module runs
them, logs them at debug, and turns failures into CommandError with a copy-pasteable
command line and the tail of its output.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from reconcile.core.errors import CommandError, ReconcileError

log = structlog.get_logger(__name__)

TAIL_LINES = 20


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    stdin: str | None = None,
    check: bool = True,
    hint: str | None = None,
) -> Completed:
    """Run argv (never through a shell) and return its output.

    `env` is added to the current environment. A missing program or a timeout is a
    ReconcileError naming the command; a non-zero exit raises CommandError when `check`.
    """
    args = tuple(str(a) for a in argv)
    full_env = {**os.environ, **env} if env else None
    log.debug("exec", argv=args, cwd=str(cwd) if cwd else None)
    started = time.monotonic()
    try:
        proc = subprocess.run(
            args,
            cwd=cwd,
            env=full_env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise ReconcileError(
            f"program not found: {args[0]}",
            hint=hint or "install it, or check PATH (the README's set-up installs the stack)",
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandError(
            args, -1, f"timed out after {timeout}s", hint=hint, retryable=True
        ) from exc
    seconds = time.monotonic() - started
    done = Completed(args, proc.returncode, proc.stdout, proc.stderr, seconds)
    log.debug("exit", argv=args, code=proc.returncode, seconds=round(seconds, 3))
    if check and proc.returncode != 0:
        raise CommandError(args, proc.returncode, tail(proc.stderr or proc.stdout), hint=hint)
    return done


def run_logged(
    argv: Sequence[str],
    log_path: Path,
    *,
    cwd: Path | None = None,
    on_line: Callable[[str], None] = lambda _line: None,
    hint: str | None = None,
) -> None:
    """Run a long command, appending its output to `log_path` line by line as it comes.

    `on_line` sees each line (for progress); a failure raises CommandError with the log's
    tail, so the error shows what went wrong and where the whole log is.
    """
    args = tuple(str(a) for a in argv)
    log.debug("exec", argv=args, cwd=str(cwd) if cwd else None, log=str(log_path))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as sink:
        sink.write(f"$ {shlex.join(args)}\n")
        sink.flush()
        try:
            proc = subprocess.Popen(  # argv, never a shell string
                args,
                cwd=cwd,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            )
        except FileNotFoundError as exc:
            raise ReconcileError(f"program not found: {args[0]}", hint=hint) from exc
        assert proc.stdout is not None
        for line in proc.stdout:
            sink.write(line)
            on_line(line.rstrip("\n"))
        code = proc.wait()
    if code != 0:
        text = log_path.read_text(errors="replace")
        raise CommandError(args, code, tail(text), hint=hint or f"the whole log is {log_path}")
