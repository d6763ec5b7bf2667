"""structlog, configured once by the CLI: console or JSON on stderr, secrets redacted.

structlog (with rich, which its console renderer loads) costs ~50 ms to import, more than a
no-op plan of 100 guests spends on everything else; most runs log nothing at the level
asked for. So modules get their logger from `get_logger`, a small stand-in that drops calls
below the configured level itself and imports structlog on the first call it lets through.
Before `configure_logging` runs, every call goes to structlog (its defaults, or whatever a
caller configured), as if the stand-in were not there.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Callable, MutableMapping
from typing import Any

SECRET_KEYS = re.compile(r"(pass(word|phrase)?|secret|token|private|credential)", re.I)

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}
# The level configure_logging set; None until then (nothing is filtered here).
_threshold: int | None = None
# (level, format) of a configure_logging whose structlog.configure has not run yet.
_pending: tuple[int, str] | None = None
_lock = threading.Lock()
_write_lock = threading.Lock()  # one log line at a time on stderr (worker threads log)


def redact(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Blank every value whose key names a secret, wherever a caller put it."""
    for key in list(event):
        if SECRET_KEYS.search(key):
            event[key] = "<redacted>"
    return event


# Where log lines go instead of straight to stderr while a live display owns the terminal
# (the apply's progress, reconcile/apply_progress.py): it writes them above itself.
_console: Callable[[str], None] | None = None


def set_console(write: Callable[[str], None] | None) -> None:
    """Route log lines through `write` (None: back to stderr)."""
    global _console  # noqa: PLW0603 - one display at a time, set and unset by the CLI
    _console = write


class _StderrLogger:
    """Writes to whatever `sys.stderr` is now, not to the stream it was when configured (an
    embedding program or a test harness may swap it and close the old one), or through the
    live display that owns the terminal (`set_console`)."""

    def msg(self, message: str) -> None:
        write = _console
        if write is not None:
            write(message)
            return
        # one write of the whole line, under a lock: print() writes the line and its newline
        # separately, and two workers' JSON lines came out as one
        with _write_lock:
            sys.stderr.write(message + "\n")
            sys.stderr.flush()

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


def _stderr_logger(*_args: Any) -> _StderrLogger:
    return _StderrLogger()


class Logger:
    """A structlog bound logger in waiting: `debug`, `info`, ..., `bind` as structlog's."""

    __slots__ = ("_context", "_name")

    def __init__(self, name: str | None, context: dict[str, Any] | None = None) -> None:
        self._name = name
        self._context = context or {}

    def bind(self, **values: Any) -> Logger:
        return Logger(self._name, {**self._context, **values})

    def _emit(self, method: str, event: str, values: dict[str, Any]) -> Any:
        if _threshold is not None and _LEVELS[method] < _threshold:
            return None
        _ensure_configured()
        import structlog  # noqa: PLC0415 - only when a line is written (see the docstring)

        logger = structlog.get_logger(self._name)
        if self._context:
            logger = logger.bind(**self._context)
        return getattr(logger, method)(event, **values)

    def debug(self, event: str, **values: Any) -> Any:
        return self._emit("debug", event, values)

    def info(self, event: str, **values: Any) -> Any:
        return self._emit("info", event, values)

    def warning(self, event: str, **values: Any) -> Any:
        return self._emit("warning", event, values)

    def error(self, event: str, **values: Any) -> Any:
        return self._emit("error", event, values)

    def exception(self, event: str, **values: Any) -> Any:
        return self._emit("exception", event, values)

    def critical(self, event: str, **values: Any) -> Any:
        return self._emit("critical", event, values)


def get_logger(name: str | None = None) -> Logger:
    return Logger(name)


def configure_logging(*, debug: bool = False, verbose: int = 0, fmt: str = "console") -> None:
    """Set the level now; structlog itself is configured by the first line written."""
    global _threshold, _pending  # noqa: PLW0603 - configured once per process, by the CLI
    level = logging.DEBUG if debug or verbose > 1 else logging.INFO if verbose else logging.WARNING
    with _lock:
        _threshold = level
        _pending = (level, fmt)


def _ensure_configured() -> None:
    global _pending  # noqa: PLW0603
    with _lock:
        if _pending is None:
            return
        level, fmt = _pending
        _pending = None
    import structlog  # noqa: PLC0415 - only when a line is written (see the docstring)

    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
