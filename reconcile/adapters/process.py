"""The one chokepoint for running commands. Nothing else imports subprocess.

(It imports subprocess itself only when a command runs: a no-op plan runs none, and
subprocess with what it loads is ~3 ms of every process start.)

Commands are values (argv tuples) built by pure functions elsewhere; this module runs
them, logs them at debug, and turns failures into CommandError with a copy-pasteable
command line and the tail of its output.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from reconcile.core.errors import CommandError, ReconcileError
from reconcile.logs import get_logger

if TYPE_CHECKING:
    import subprocess

log = get_logger(__name__)

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


# Every command is bounded. Quick commands (git, mount, nix metadata, ssh-agent) get this
# unless the caller knows better; long work (builds, copies) passes its own limit.
DEFAULT_TIMEOUT_S = 120.0
LONG_TIMEOUT_S = 6 * 3600.0  # a build nobody bounded: a kernel from scratch on a small host
KILL_GRACE_S = 5.0

# Environment variables that hold secrets (a manifest's `passphrase_env` names them). No
# child inherits them: a child that needs one is handed it explicitly in `env`.
_SECRET_NAMES: set[str] = set()


def hide_from_children(names: Iterable[str]) -> None:
    """Never pass these variables to a child process unless a caller gives them in `env`."""
    _SECRET_NAMES.update(names)


def child_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a child gets: ours without the secrets, plus `env`."""
    base = {k: v for k, v in os.environ.items() if k not in _SECRET_NAMES}
    return {**base, **(env or {})}


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the command and everything it started (it leads its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    stdin: str | None = None,
    check: bool = True,
    hint: str | None = None,
) -> Completed:
    """Run argv (never through a shell) and return its output.

    `env` is added to the environment (secrets removed, see `hide_from_children`). The
    command runs in its own session, so a timeout kills it and everything it started. A
    missing program or a timeout is a ReconcileError naming the command; a non-zero exit
    raises CommandError when `check`.
    """
    import subprocess  # noqa: PLC0415 - see the module's docstring

    args = tuple(str(a) for a in argv)
    log.debug("exec", argv=args, cwd=str(cwd) if cwd else None, timeout=timeout)
    started = time.monotonic()
    try:
        proc = subprocess.Popen(  # argv, never a shell string
            args,
            cwd=cwd,
            env=child_env(env),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise ReconcileError(
            f"program not found: {args[0]}",
            hint=hint or "install it, or check PATH (the README's set-up installs the stack)",
        ) from exc
    try:
        stdout, stderr = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        stdout, stderr = proc.communicate(timeout=KILL_GRACE_S)
        raise CommandError(
            args,
            -1,
            f"timed out after {timeout:g}s and was killed" + _said(stderr or stdout),
            hint=hint,
            retryable=True,
        ) from None
    except BaseException:
        _kill_group(proc)  # interrupted: leave nothing running behind us
        proc.wait()
        raise
    seconds = time.monotonic() - started
    done = Completed(args, proc.returncode, stdout, stderr, seconds)
    log.debug("exit", argv=args, code=proc.returncode, seconds=round(seconds, 3))
    if check and proc.returncode != 0:
        raise CommandError(args, proc.returncode, tail(stderr or stdout), hint=hint)
    return done


def exec_replace(argv: Sequence[str], env: Mapping[str, str] | None = None) -> NoReturn:
    """Replace this process with argv (looked up on PATH), for a command that takes over the
    user's terminal (`reconcile ssh`): it inherits stdin, stdout, stderr and the session, so
    job control, Ctrl-C and the exit code are the command's own. Never returns.

    `env` is added to the environment, secrets removed as for `run`. A missing program is a
    ReconcileError naming it; stdout and stderr are flushed first (nothing is lost).
    """
    args = tuple(str(a) for a in argv)
    log.debug("exec-replace", argv=args)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    try:
        os.execvpe(args[0], args, child_env(env))  # noqa: S606 - argv, never a shell string
    except FileNotFoundError as exc:
        raise ReconcileError(
            f"program not found: {args[0]}",
            hint="install it, or check PATH (the README's set-up installs the stack)",
        ) from exc
    except OSError as exc:
        raise ReconcileError(f"cannot run {args[0]}: {exc.strerror or exc}") from None


def _said(output: str) -> str:
    text = tail(output, 5)
    return f"; its last output:\n{text}" if text else ""


def run_logged(
    argv: Sequence[str],
    log_path: Path,
    *,
    timeout: float = LONG_TIMEOUT_S,
    cwd: Path | None = None,
    on_line: Callable[[str], None] = lambda _line: None,
    hint: str | None = None,
) -> None:
    """Run a long command, appending its output to `log_path` line by line as it comes.

    `on_line` sees each line (for progress); a failure raises CommandError with the log's
    tail, so the error shows what went wrong and where the whole log is. Past `timeout` the
    command and everything it started are killed.
    """
    import subprocess  # noqa: PLC0415 - see the module's docstring

    args = tuple(str(a) for a in argv)
    log.debug("exec", argv=args, cwd=str(cwd) if cwd else None, log=str(log_path))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    timed_out = threading.Event()
    with log_path.open("a") as sink:
        sink.write(f"$ {shlex.join(args)}\n")
        sink.flush()
        try:
            proc = subprocess.Popen(  # argv, never a shell string
                args,
                cwd=cwd,
                env=child_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            raise ReconcileError(f"program not found: {args[0]}", hint=hint) from exc

        def expire() -> None:
            timed_out.set()
            _kill_group(proc)

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                sink.write(line)
                on_line(line.rstrip("\n"))
            code = proc.wait()
        except BaseException:
            _kill_group(proc)
            proc.wait()
            raise
        finally:
            timer.cancel()
    text = log_path.read_text(errors="replace") if code != 0 else ""
    if timed_out.is_set():
        raise CommandError(
            args,
            -1,
            f"timed out after {timeout:g}s and was killed\n{tail(text)}",
            hint=hint or f"the whole log is {log_path}",
            retryable=True,
        )
    if code != 0:
        raise CommandError(args, code, tail(text), hint=hint or f"the whole log is {log_path}")


def run_fed(
    argv: Sequence[str],
    source: Path | Sequence[str],
    *,
    timeout: float = LONG_TIMEOUT_S,
    hint: str | None = None,
) -> Completed:
    """Run argv with its stdin fed from the file `source`, or from the output of the argv
    `source` run beside it (a pipe without a shell). Either failing raises CommandError."""
    import subprocess  # noqa: PLC0415 - see the module's docstring

    args = tuple(str(a) for a in argv)
    log.debug("exec", argv=args, stdin=str(source) if isinstance(source, Path) else source)
    started = time.monotonic()
    producer: subprocess.Popen[bytes] | None = None
    producer_args: tuple[str, ...] = ()
    with contextlib.ExitStack() as stack:
        if isinstance(source, Path):
            feed: Any = stack.enter_context(source.open("rb"))
        else:
            producer_args = tuple(str(a) for a in source)
            producer = subprocess.Popen(  # argv, never a shell string
                producer_args,
                env=child_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            feed = producer.stdout
        try:
            done = subprocess.run(  # argv, never a shell string
                args, env=child_env(), stdin=feed, capture_output=True, timeout=timeout,
                check=False, start_new_session=True,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise CommandError(args, -1, f"timed out after {timeout:g}s", hint=hint) from None
        finally:
            if producer is not None:
                assert producer.stdout is not None
                producer.stdout.close()
                try:  # it has written all (or had its pipe closed: SIGPIPE)
                    producer.wait(timeout=KILL_GRACE_S)
                except subprocess.TimeoutExpired:
                    _kill_group(producer)  # type: ignore[arg-type]
                    producer.wait()
    stderr = done.stderr.decode(errors="replace")
    if producer is not None and producer.returncode != 0:
        assert producer.stderr is not None
        said = producer.stderr.read().decode(errors="replace")
        producer.stderr.close()
        raise CommandError(producer_args, producer.returncode, tail(said), hint=hint)
    if producer is not None and producer.stderr is not None:
        producer.stderr.close()
    if done.returncode != 0:
        raise CommandError(args, done.returncode, tail(stderr), hint=hint)
    out = done.stdout.decode(errors="replace")
    return Completed(args, done.returncode, out, stderr, time.monotonic() - started)


def stream(argv: Sequence[str], emit: Callable[[bytes], None]) -> int:
    """Run argv, handing its output to `emit` as it comes, until it exits (its exit code)
    or this process is interrupted (the command and what it started are killed)."""
    import subprocess  # noqa: PLC0415 - see the module's docstring

    args = tuple(str(a) for a in argv)
    log.debug("exec", argv=args, streaming=True)
    try:
        proc = subprocess.Popen(  # argv, never a shell string
            args,
            env=child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise ReconcileError(f"program not found: {args[0]}") from exc
    assert proc.stdout is not None
    try:
        while data := os.read(proc.stdout.fileno(), 1 << 16):
            emit(data)
        return proc.wait()
    except BaseException:
        _kill_group(proc)  # type: ignore[arg-type]
        proc.wait()
        raise
    finally:
        proc.stdout.close()
