"""Log lines from the executor's worker threads stay whole lines on stderr: with
`--log-format json` each line is one JSON object (apply's progress, for scripts)."""

from __future__ import annotations

import io
import json
import sys
import threading
import time

import pytest

from reconcile.logs import _stderr_logger


class _Pipe(io.StringIO):
    """A stream whose writes let other threads run, as a pipe's system calls do."""

    def write(self, text: str) -> int:
        time.sleep(0)
        return super().write(text)


def test_concurrent_log_lines_are_never_run_together(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = _Pipe()
    monkeypatch.setattr(sys, "stderr", stream)
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        barrier.wait()
        for i in range(200):
            _stderr_logger().msg(json.dumps({"worker": n, "line": i}))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 8 * 200
    assert sorted((d["worker"], d["line"]) for d in map(json.loads, lines)) == [
        (n, i) for n in range(8) for i in range(200)
    ]
