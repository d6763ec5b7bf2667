"""An apply's progress on stderr: a line per finished step, and on a terminal the running ones.

The CLI hands it the stream (stderr: results, and `--json`, are on stdout) and the executor's
events drive it (`execute`'s `on_start`, `on_progress`, `on_result`). Every finished step
is one plain line, `[ 3/12] web: define done (0.4s)`, the same on a terminal and elsewhere
(a CI log, a file). On a terminal, below those lines stands a block with one line per
running step, `  web  booting  12s`, a kernel build's with what make has done so far;
it is redrawn in place (cursor up, clear to the end of the screen) at every event and once
a second, each line cut to the terminal's width so that none wraps, at most a screen's
height of them. Log lines written meanwhile go above the block (`logs.set_console`).
No dependency: a few ANSI control sequences that every terminal emulator knows.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TextIO

from reconcile import logs
from reconcile.core.plan.actions import Action, ActionKind
from reconcile.orchestration.executor import Result

# What each kind of step is doing while it runs, as the block shows it.
VERBS = {
    ActionKind.BUILD: "building closures",
    ActionKind.BUILD_KERNEL: "building kernel",
    ActionKind.REMOVE_KERNEL: "removing kernel build",
    ActionKind.VIEW: "making view",
    ActionKind.DEFINE: "defining",
    ActionKind.SHUTDOWN: "shutting down",
    ActionKind.START: "booting",
    ActionKind.WAIT_READY: "waiting until ready",
    ActionKind.DESTROY: "destroying",
    ActionKind.UNDEFINE: "undefining",
    ActionKind.GC_ROOTS: "restoring GC roots",
    ActionKind.COPY: "copying closure",
    ActionKind.PROFILE: "setting profile",
    ActionKind.ACTIVATE: "activating",
    ActionKind.REBOOT: "rebooting",
    ActionKind.HEALTH: "checking health",
}

UP_AND_CLEAR = "\x1b[{n}F\x1b[J"  # to the start of the line n up, clear to the end of screen
CLEAR = "\r\x1b[J"
TICK_S = 1.0


def label(action: Action) -> str:
    """The step's subject as the plan's keys name it: a guest or host (`web` of `web/start`),
    or the lab's own step itself (`build`, `kernel:next`, `view:<name>`)."""
    return action.key.split("/", 1)[0]


def elapsed(seconds: float) -> str:
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def finished_line(result: Result, done: int, total: int) -> str:
    """One finished step: `[ 3/12] web: define done (0.4s)`, with the first line of what
    went wrong when it did not succeed (the summary after the apply has all of it)."""
    width = len(str(total))
    action = result.action
    line = (
        f"[{done:>{width}}/{total}] {label(action)}: {action.kind.value} "
        f"{result.outcome.value} ({result.seconds:.1f}s)"
    )
    if result.message and not result.outcome.ok():
        line += ": " + result.message.splitlines()[0]
    return line


@dataclass
class _Running:
    action: Action
    started: float
    detail: str = ""


def running_lines(running: list[_Running], now: float, width: int, height: int) -> list[str]:
    """The block: a line per running step, in the order they started, aligned, each cut to
    `width - 1` columns, and no more than `height - 1` lines (the last says how many more)."""
    if not running:
        return []
    names = max(len(label(r.action)) for r in running)
    verbs = max(len(VERBS.get(r.action.kind, r.action.kind.value)) for r in running)
    lines = []
    for r in running:
        verb = VERBS.get(r.action.kind, r.action.kind.value)
        line = f"  {label(r.action):<{names}}  {verb:<{verbs}}  {elapsed(now - r.started):>6}"
        lines.append((line + (f"  {r.detail}" if r.detail else "")).rstrip())
    room = max(1, height - 1)
    if len(lines) > room:
        lines = [*lines[: room - 1], f"  ... and {len(lines) - room + 1} more running"]
    return [line[: max(1, width - 1)].rstrip() for line in lines]


def live_terminal(stream: TextIO) -> bool:
    """Whether to draw the block: a terminal that takes cursor movement."""
    try:
        return stream.isatty() and os.environ.get("TERM", "") != "dumb"
    except (AttributeError, ValueError):  # not a file, or closed
        return False


def _size(stream: TextIO) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, ValueError, OSError):
        return 80, 24
    return size.columns, size.lines


@dataclass
class Progress:
    """The apply's display; a context manager. `live=None` decides by the stream; `enabled`
    False shows nothing (with `--log-format json` the log's start and done events are the
    progress)."""

    stream: TextIO
    total: int
    live: bool | None = None
    enabled: bool = True
    clock: Callable[[], float] = time.monotonic
    size: Callable[[], tuple[int, int]] | None = None  # (columns, lines); the stream's own
    _running: dict[str, _Running] = field(default_factory=dict, init=False)
    _done: int = field(default=0, init=False)
    _drawn: int = field(default=0, init=False)  # lines of the block on the screen now
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _ticker: threading.Thread | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.live is None:
            self.live = self.enabled and live_terminal(self.stream)

    def __enter__(self) -> Progress:
        if self.enabled and self.live:
            logs.set_console(self.above)
            self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._ticker.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
            logs.set_console(None)
        with self._lock:
            self._erase()
            self._flush()

    # -- the executor's events ----------------------------------------------------------

    def started(self, action: Action) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._running[action.key] = _Running(action, self.clock())
            self._redraw()

    def progress(self, action: Action, detail: str) -> None:
        if not self.enabled:
            return
        with self._lock:
            running = self._running.get(action.key)
            if running is not None:
                running.detail = detail
                self._redraw()

    def finished(self, result: Result) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._running.pop(result.action.key, None)
            self._done += 1
            self._above(finished_line(result, self._done, self.total))

    def above(self, text: str) -> None:
        """Write `text` (a log line) above the block."""
        with self._lock:
            self._above(text)

    # -- drawing (under the lock) -------------------------------------------------------

    def _above(self, text: str) -> None:
        self._erase()
        self.stream.write(text + "\n")
        self._draw()
        self._flush()

    def _redraw(self) -> None:
        if self.live:
            self._erase()
            self._draw()
            self._flush()

    def _erase(self) -> None:
        if self.live:
            self.stream.write(UP_AND_CLEAR.format(n=self._drawn) if self._drawn else CLEAR)
            self._drawn = 0

    def _draw(self) -> None:
        if not self.live:
            return
        width, height = (self.size or (lambda: _size(self.stream)))()
        lines = running_lines(list(self._running.values()), self.clock(), width, height)
        for line in lines:
            self.stream.write(line + "\n")
        self._drawn = len(lines)

    def _flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # a broken stderr must not fail the apply
            self.stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(TICK_S):
            with self._lock:
                if self._running:  # the elapsed times move on
                    self._redraw()
