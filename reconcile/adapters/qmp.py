"""A QEMU Machine Protocol client: one connection per command, over the guest's socket.

QEMU serves one QMP client at a time on a `server=on` socket; a command here connects,
negotiates, sends, reads its answer (skipping asynchronous events) and closes, so that a
stuck peer costs at most the timeout and never blocks the next command for long.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

from reconcile.core.errors import ProbeError

TIMEOUT_S = 5.0
MAX_LINE = 1 << 20


class QmpError(ProbeError):
    """The socket is gone, the peer did not answer, or it answered with an error."""


def _lines(sock: socket.socket, deadline: float) -> Any:
    buffer = b""
    while True:
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield json.loads(line)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock.settimeout(remaining)
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buffer += chunk
        if len(buffer) > MAX_LINE:
            raise ValueError("answer too long")


def _answer(lines: Any) -> dict[str, Any]:
    for message in lines:
        if "return" in message:
            answer: dict[str, Any] = {"return": message["return"]}
            return answer
        if "error" in message:
            error = message["error"]
            raise QmpError(f"{error.get('class', 'error')}: {error.get('desc', '')}")
        # {"event": ...} or the greeting: not an answer
    raise QmpError("no answer")


def execute(path: Path, command: str, timeout_s: float = TIMEOUT_S) -> Any:
    """`command`'s return value; QmpError when the socket cannot be used."""
    deadline = time.monotonic() + timeout_s
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(str(path))
            lines = _lines(sock, deadline)
            greeting = next(lines)
            if "QMP" not in greeting:
                raise QmpError(f"{path}: not a QMP socket")
            sock.sendall(b'{"execute": "qmp_capabilities"}\n')
            _answer(lines)
            sock.sendall(json.dumps({"execute": command}).encode() + b"\n")
            return _answer(lines)["return"]
    except QmpError:
        raise
    except (OSError, TimeoutError, ValueError, StopIteration) as exc:
        why = str(exc) or type(exc).__name__
        raise QmpError(f"QMP {command} on {path}: {why}") from None
