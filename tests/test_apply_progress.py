"""The apply's progress display, against fake streams: plain lines where stderr is not a
terminal, a live block of running steps redrawn in place where it is (read back through a
small terminal emulator), and the CLI's --show-unmanaged."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from reconcile import apply_progress, logs
from reconcile.apply_progress import Progress, elapsed, finished_line, running_lines
from reconcile.cli import build_parser
from reconcile.core.plan.actions import (
    BuildKernel,
    DestroyGuest,
    GuestRef,
    ShutdownGuest,
    UndefineGuest,
)
from reconcile.orchestration.executor import Outcome, Result
from tests.support.terminal import screen

KERNEL = BuildKernel("next", Path("/state/kernels/next-abc"))
WEB = ShutdownGuest(GuestRef("web", "local", "t-web"), 1.0)
DB = DestroyGuest(GuestRef("db", "local", "t-db"))
DB_UNDEFINE = UndefineGuest(GuestRef("db", "local", "t-db"))


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def live(
    stream: io.StringIO, clock: Clock, total: int = 3, size: tuple[int, int] = (80, 24)
) -> Progress:
    return Progress(stream, total, live=True, clock=clock, size=lambda: size)


# -- the lines -------------------------------------------------------------------------------


def test_a_finished_step_is_one_line_with_its_place_outcome_and_time() -> None:
    assert finished_line(Result(WEB, Outcome.DONE, 0.42), 3, 12) == (
        "[ 3/12] web: shutdown done (0.4s)"
    )
    assert finished_line(Result(KERNEL, Outcome.SKIPPED, 0.0), 1, 2) == (
        "[1/2] kernel:next: build-kernel skipped (0.0s)"
    )
    failed = Result(DB, Outcome.FAILED, 2.0, "it hung\nhint: read its console")
    assert finished_line(failed, 2, 2) == "[2/2] db: destroy failed (2.0s): it hung"
    blocked = Result(DB_UNDEFINE, Outcome.BLOCKED, message="not run: db/destroy did not succeed")
    assert finished_line(blocked, 3, 3).endswith(
        "blocked (0.0s): not run: db/destroy did not succeed"
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.4, "0s"), (59.9, "59s"), (61, "1m01s"), (3599, "59m59s"), (3660, "1h01m")],
)
def test_elapsed(seconds: float, text: str) -> None:
    assert elapsed(seconds) == text


def test_running_lines_are_aligned_cut_to_the_width_and_capped_at_the_height() -> None:
    running = [
        apply_progress._Running(KERNEL, 0.0, "make bzImage: 1250 objects"),
        apply_progress._Running(WEB, 50.0),
    ]
    assert running_lines(running, 252.0, 100, 24) == [
        "  kernel:next  building kernel   4m12s  make bzImage: 1250 objects",
        "  web          shutting down     3m22s",
    ]
    assert running_lines(running, 252.0, 30, 24) == [
        "  kernel:next  building kerne",
        "  web          shutting down",
    ]
    many = [apply_progress._Running(WEB, 0.0) for _ in range(10)]
    capped = running_lines(many, 1.0, 80, 5)
    assert len(capped) == 4 and capped[-1] == "  ... and 7 more running"


# -- not a terminal: plain lines --------------------------------------------------------------


def test_elsewhere_only_finished_steps_are_written_plain() -> None:
    stream = io.StringIO()  # isatty() is False: a pipe, a file, a CI log
    with Progress(stream, 2) as shown:
        assert not shown.live
        shown.started(KERNEL)
        shown.progress(KERNEL, "make bzImage: 10 objects")
        shown.finished(Result(KERNEL, Outcome.DONE, 310.0))
        shown.started(WEB)
        shown.finished(Result(WEB, Outcome.FAILED, 1.0, "refused"))
    assert stream.getvalue().splitlines() == [
        "[1/2] kernel:next: build-kernel done (310.0s)",
        "[2/2] web: shutdown failed (1.0s): refused",
    ]
    assert stream.getvalue().endswith("\n")


def test_disabled_shows_nothing_even_on_a_terminal() -> None:
    stream = Tty()
    with Progress(stream, 1, enabled=False) as shown:
        shown.started(WEB)
        shown.finished(Result(WEB, Outcome.DONE, 1.0))
    assert stream.getvalue() == ""


def test_a_dumb_terminal_gets_plain_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "dumb")
    assert not Progress(Tty(), 1).live
    monkeypatch.setenv("TERM", "xterm-256color")
    assert Progress(Tty(), 1).live


# -- a terminal: the running steps, redrawn in place -------------------------------------------


def test_on_a_terminal_each_running_step_has_a_line_updated_in_place() -> None:
    stream, clock = Tty(), Clock()
    with live(stream, clock) as shown:
        shown.started(KERNEL)
        assert screen(stream.getvalue()) == ["  kernel:next  building kernel      0s"]
        clock.now += 252
        shown.progress(KERNEL, "make bzImage: 1250 objects")
        shown.started(WEB)
        assert screen(stream.getvalue()) == [
            "  kernel:next  building kernel   4m12s  make bzImage: 1250 objects",
            "  web          shutting down        0s",
        ]
        clock.now += 3
        shown.finished(Result(WEB, Outcome.DONE, 3.0))
        # the finished step is a line above the block, which now holds the kernel alone
        assert screen(stream.getvalue()) == [
            "[1/3] web: shutdown done (3.0s)",
            "  kernel:next  building kernel   4m15s  make bzImage: 1250 objects",
        ]
        shown.above("2024-05-01T12:00:00Z [warning] a log line")
        assert screen(stream.getvalue()) == [
            "[1/3] web: shutdown done (3.0s)",
            "2024-05-01T12:00:00Z [warning] a log line",
            "  kernel:next  building kernel   4m15s  make bzImage: 1250 objects",
        ]
        shown.finished(Result(KERNEL, Outcome.DONE, 255.0))
        shown.finished(Result(DB, Outcome.BLOCKED, message="not run: kernel did not succeed"))
    # closed: the block is gone, the finished lines stay
    assert screen(stream.getvalue()) == [
        "[1/3] web: shutdown done (3.0s)",
        "2024-05-01T12:00:00Z [warning] a log line",
        "[2/3] kernel:next: build-kernel done (255.0s)",
        "[3/3] db: destroy blocked (0.0s): not run: kernel did not succeed",
    ]


def test_on_a_terminal_log_lines_go_above_the_block_while_it_is_shown() -> None:
    stream, clock = Tty(), Clock()
    before = logs._console
    with live(stream, clock) as shown:
        shown.started(WEB)
        logs._stderr_logger().msg("[error] something")  # what structlog calls for a line
        assert screen(stream.getvalue()) == [
            "[error] something",
            "  web  shutting down      0s",
        ]
    assert logs._console is before is None  # back to stderr


def test_no_line_of_the_block_is_wider_than_the_terminal() -> None:
    stream, clock = Tty(), Clock()
    with live(stream, clock, size=(24, 10)) as shown:
        shown.started(KERNEL)
        shown.progress(KERNEL, "make modules: 99990 objects")
        assert all(len(line) <= 23 for line in screen(stream.getvalue()))


# -- the CLI --------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["plan", "apply", "drift"])
def test_show_unmanaged_is_an_option_of_plan_apply_and_drift(command: str) -> None:
    parser = build_parser()
    assert parser.parse_args([command, "m.toml"]).show_unmanaged is False
    assert parser.parse_args([command, "m.toml", "--show-unmanaged"]).show_unmanaged is True
